package lbclient

import "github.com/chatfleet/chatfleet/internal/envconf"

// RegistrarConfigFromEnv reads a chatserver's load-balancer settings through
// getenv (os.Getenv in production): LOADBALANCERS, comma-separated base URLs
// (none: the host registers nowhere), LOADBALANCER_KEY, LOADBALANCER_CA_FILE
// and HEARTBEAT_EVERY. Report and Log are the caller's to set; NewRegistrar
// checks the URLs and the key.
func RegistrarConfigFromEnv(getenv func(string) string) (RegistrarConfig, error) {
	r := envconf.New(getenv)
	c := RegistrarConfig{
		URLs:   r.List("LOADBALANCERS"),
		Key:    r.Str("LOADBALANCER_KEY", ""),
		CAFile: r.Str("LOADBALANCER_CA_FILE", ""),
		Every:  r.Dur("HEARTBEAT_EVERY", 0),
	}
	return c, r.Err()
}
