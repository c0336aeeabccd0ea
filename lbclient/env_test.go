package lbclient

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRegistrarConfigFromEnv(t *testing.T) {
	env := map[string]string{"LOADBALANCERS": "http://lb1:2000, http://lb2:2000", "LOADBALANCER_KEY": "k",
		"LOADBALANCER_CA_FILE": "/ca.pem", "HEARTBEAT_EVERY": "2s"}
	c, err := RegistrarConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := RegistrarConfig{URLs: []string{"http://lb1:2000", "http://lb2:2000"}, Key: "k", CAFile: "/ca.pem", Every: 2 * time.Second}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
	env["HEARTBEAT_EVERY"] = "often"
	if _, err := RegistrarConfigFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "HEARTBEAT_EVERY") {
		t.Errorf("HEARTBEAT_EVERY=often: %v, want an error naming it", err)
	}
}
