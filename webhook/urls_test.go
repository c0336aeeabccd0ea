package webhook

import (
	"strings"
	"testing"
)

// The rule for a room's own webhook URLs, which the control API and the
// host both apply.
func TestValidateURLs(t *testing.T) {
	long := "https://example.com/" + strings.Repeat("p", MaxURLLen-len("https://example.com/"))
	for _, ok := range [][]string{
		nil,
		{"https://hooks.example.com/in?token=x", "http://8.8.8.8:8080/", long},
		{"https://a.example/1", "https://a.example/2", "https://a.example/3", "https://a.example/4", "https://a.example/5"},
	} {
		if err := ValidateURLs(ok, false); err != nil {
			t.Errorf("%.60q: %v", ok, err)
		}
	}
	for _, tc := range []struct {
		urls         []string
		allowPrivate bool
		want         string
	}{
		{[]string{"https://a/1", "https://a/2", "https://a/3", "https://a/4", "https://a/5", "https://a/6"}, true, "at most 5 URLs"},
		{[]string{long + "p"}, true, "longer than 1024 bytes"},
		{[]string{"javascript:alert(1)"}, true, "not an absolute http or https URL"},
		{[]string{"ftp://example.com/x?key=hidden"}, true, `"ftp://example.com/x" is not`},
		{[]string{"https://user:pw@example.com/x"}, true, "credentials in a URL are not allowed"},
		{[]string{"http://127.0.0.1:9/x?key=hidden"}, false, `"http://127.0.0.1:9/x": 127.0.0.1: address is not a public unicast address: deliveries go to public addresses only`},
		{[]string{"http://[::1]/x"}, false, "public addresses only"},
		{[]string{"http://localhost/x"}, false, "public addresses only"},
	} {
		err := ValidateURLs(tc.urls, tc.allowPrivate)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hidden") {
			t.Errorf("%.60q: %v, want an error saying %q", tc.urls, err, tc.want)
		}
	}
	// Private addresses pass where they are allowed (WEBHOOK_URLS, development).
	if err := ValidateURLs([]string{"http://127.0.0.1:9/x", "http://localhost/x"}, true); err != nil {
		t.Errorf("allowPrivate: %v", err)
	}
}
