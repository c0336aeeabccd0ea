package lb

import (
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/chatfleet/chatfleet/internal/envconf"
)

// ConfigFromEnv reads a load balancer's configuration through getenv
// (os.Getenv in production; docs/loadbalancer.md lists the variables):
// LOADBALANCER_KEY (required), PORT (default 2000), HOST_DOWN_AFTER,
// TLS_CERT_FILE, TLS_KEY_FILE, and LOG_LEVEL (default error) for Log, JSON
// lines on stdout. Errors name the variable; none holds the key.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	r := envconf.New(getenv)
	level := r.LogLevel("LOG_LEVEL", slog.LevelError)
	c := Config{Key: r.Str("LOADBALANCER_KEY", "")}
	if c.Key == "" {
		r.Fail("LOADBALANCER_KEY is required")
	}
	c.Addr = net.JoinHostPort("", strconv.Itoa(r.IntIn("PORT", 2000, 0, 65535)))
	c.DownAfter = r.PositiveDur("HOST_DOWN_AFTER", 0)
	c.TLSCertFile = r.Str("TLS_CERT_FILE", "")
	c.TLSKeyFile = r.Str("TLS_KEY_FILE", "")
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	c.Log = slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level})).With("app", "loadbalancer")
	return c, nil
}
