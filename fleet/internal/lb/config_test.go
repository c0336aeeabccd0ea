package lb

import (
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := ConfigFromEnv(env("LOADBALANCER_KEY", "lb-key"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Key != "lb-key" || c.Addr != ":2000" || c.DownAfter != 0 || c.Log == nil || c.TLSCertFile != "" {
		t.Errorf("defaults: %+v", c)
	}
	c, err = ConfigFromEnv(env("LOADBALANCER_KEY", "lb-key", "PORT", "0", "HOST_DOWN_AFTER", "20s",
		"TLS_CERT_FILE", "/c.pem", "TLS_KEY_FILE", "/k.pem", "LOG_LEVEL", "debug"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":0" || c.DownAfter != 20*time.Second || c.TLSCertFile != "/c.pem" || c.TLSKeyFile != "/k.pem" {
		t.Errorf("set: %+v", c)
	}
	for _, tc := range []struct {
		kv   []string
		want string
	}{
		{[]string{"PORT", "0"}, "LOADBALANCER_KEY is required"},
		{[]string{"LOADBALANCER_KEY", "lb-key", "PORT", "http"}, `PORT="http"`},
		{[]string{"LOADBALANCER_KEY", "lb-key", "PORT", "65536"}, `PORT="65536"`},
		{[]string{"LOADBALANCER_KEY", "lb-key", "HOST_DOWN_AFTER", "0s"}, `HOST_DOWN_AFTER="0s"`},
		{[]string{"LOADBALANCER_KEY", "lb-key", "LOG_LEVEL", "loud"}, `LOG_LEVEL="loud"`},
	} {
		if _, err := ConfigFromEnv(env(tc.kv...)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.kv, err, tc.want)
		}
	}
}
