package netguard

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPublic(t *testing.T) {
	for s, want := range map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "2606:4700::1111": true, "93.184.216.34": true,
		"127.0.0.1": false, "127.9.9.9": false, "::1": false, "0.0.0.0": false, "::": false,
		"10.1.2.3": false, "172.16.0.1": false, "172.31.255.255": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "100.64.0.1": false, "100.127.255.254": false,
		"224.0.0.1": false, "239.255.255.250": false, "ff02::1": false, "255.255.255.255": false,
		"fc00::1": false, "fd12:3456::1": false, "::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false,
		"::ffff:8.8.8.8": true, "64:ff9b::7f00:1": false, "64:ff9b::808:808": true, "::127.0.0.1": false,
		"2002:7f00:1::": false, "192.0.2.1": false, "198.18.0.1": false, "2001:db8::1": false,
	} {
		if got := Public(netip.MustParseAddr(s)); got != want {
			t.Errorf("Public(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestCheckURLHost(t *testing.T) {
	for s, ok := range map[string]bool{
		"https://hooks.example.com/x":        true,
		"https://8.8.8.8/x":                  true,
		"http://127.0.0.1:9999/x":            false,
		"http://[::1]:8090/api":              false,
		"http://[::ffff:127.0.0.1]/":         false,
		"http://169.254.169.254/latest/":     false,
		"http://10.0.0.5:8090/api/v1/rooms/": false,
		"http://2130706433/":                 false,
		"http://0x7f000001/":                 false,
		"http://127.1/":                      false,
		"http://0177.0.0.1/":                 false,
		"http://localhost:8090/":             false,
		"http://a.localhost./":               false,
		"http://0/":                          false,
	} {
		err := CheckURLHost(s)
		if (err == nil) != ok {
			t.Errorf("CheckURLHost(%s) = %v, want ok=%v", s, err, ok)
		}
		if err != nil && !errors.Is(err, ErrNotPublic) {
			t.Errorf("CheckURLHost(%s) = %v, want ErrNotPublic", s, err)
		}
	}
}

// TestDialerRefusesLoopback dials a real loopback server by name: the check
// happens on the resolved address, so "localhost" cannot pass.
func TestDialerRefusesLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, host := range []string{"127.0.0.1", "localhost"} {
		c := &http.Client{Transport: &http.Transport{DialContext: Dialer(time.Second, false).DialContext}}
		_, err := c.Get("http://" + net.JoinHostPort(host, port) + "/")
		if !errors.Is(err, ErrNotPublic) {
			t.Fatalf("GET via %s: %v, want ErrNotPublic", host, err)
		}
		c = &http.Client{Transport: &http.Transport{DialContext: Dialer(time.Second, true).DialContext}}
		resp, err := c.Get("http://" + net.JoinHostPort(host, port) + "/")
		if err != nil {
			t.Fatalf("GET via %s with private addresses allowed: %v", host, err)
		}
		resp.Body.Close()
	}
}

func TestParsePrefixes(t *testing.T) {
	ps, err := ParsePrefixes(Private + ", 203.0.113.7")
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"127.0.0.1": true, "10.9.9.9": true, "::ffff:192.168.0.1": true, "203.0.113.7": true, "203.0.113.8": false, "8.8.8.8": false} {
		if got := Contains(ps, netip.MustParseAddr(s)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", s, got, want)
		}
	}
	if _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Fatal("bad prefix accepted")
	}
}

func TestHTTPURL(t *testing.T) {
	for _, ok := range []string{
		"http://h", "https://h.example:8443/p?q=1", "HTTPS://H/", "http://[::1]:80", "https://u:p@h/x",
		"https://h/" + strings.Repeat("p", 30-len("https://h/")),
	} {
		if u, err := HTTPURL(ok, 30); err != nil || u.Host == "" {
			t.Errorf("HTTPURL(%q) = %v, %v", ok, u, err)
		}
	}
	for _, bad := range []string{
		"", "h.example.com", "/path", "ftp://h/x", "javascript:alert(1)", "https:///x", "http://h:port",
		"ws://h/x", "https://h/" + strings.Repeat("p", 31-len("https://h/")),
	} {
		if u, err := HTTPURL(bad, 30); err == nil {
			t.Errorf("HTTPURL(%q) = %v, want an error", bad, u)
		}
	}
	if _, err := HTTPURL("https://h/"+strings.Repeat("p", 5000), 0); err != nil {
		t.Errorf("no limit: %v", err)
	}
}
