// Package faults holds the fleet's fault-injection, bad-input and soak tests.
// It has no code of its own: every test builds the real chatserver and
// loadbalancer binaries, runs them as processes on loopback ports, and
// breaks what lies between them and their peers: network links through an
// embedded Toxiproxy (heartbeats, the store link, a viewer's socket),
// shutdown under load, malformed HTTP and WebSocket input written by hand,
// and hours' worth of viewer churn compressed into a soak.
//
// `make test` runs everything here in its short form (about two minutes);
// `make soak` runs TestSoak at full size (CHATFLEET_SOAK=10m: 10,000
// viewers over 20 rooms for 10 minutes). docs/reliability.md lists each
// test, what it proves and its figures.
package faults
