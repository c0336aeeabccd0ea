package main

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"CHATFLEET_BIN": "/bin"}
	getenv := func(k string) string { return env[k] }
	c, err := configFromEnv(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != ".data" || c.Reset || c.HTTPPort != 3000 || c.RoomPortMin != 34000 || c.StorePort != 27018 ||
		!reflect.DeepEqual(c.LBPorts, []int{2000, 2001}) || !reflect.DeepEqual(c.AdminPorts, []int{8090, 8091}) ||
		c.StoreLogLevel != slog.LevelInfo || c.AllowPrivateHooks != "1" || c.keys.Key != "TESTING_KEY" ||
		c.BindAddr != "127.0.0.1" || c.PublicHost != "127.0.0.1" {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct{ name, value, want string }{
		{"HOST_PORTS", "8080,x", `HOST_PORTS="8080,x": want comma-separated port numbers`},
		{"HOST_PORTS", "8080", "HOST_PORTS and HOST_ADMIN_PORTS must list as many ports"},
		{"HTTP_PORT", "70000", `HTTP_PORT="70000"`},
		{"STORE_LOG_LEVEL", "loud", `STORE_LOG_LEVEL="loud"`},
		{"CHATFLEET_RESET", "yes", `CHATFLEET_RESET="yes"`},
		{"BIND_ADDR", "host.docker.internal", `BIND_ADDR="host.docker.internal": want an IP address`},
	} {
		env = map[string]string{"CHATFLEET_BIN": "/bin", tc.name: tc.value}
		if _, err := configFromEnv(getenv); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v, want %q", tc.name, tc.value, err, tc.want)
		}
	}
}
