// Package infra holds no code: its tests check the deployment files beside
// it (nginx, systemd, CloudFormation, Docker, docker-compose) against the
// binaries they deploy. The environment variables, ports and metrics the
// tests expect are read from the binaries' source, so the checks follow the
// code. docker_test.go runs the images on this machine's Docker engine (a
// chatserver container whose master is killed, and compose). See
// docs/operations.md.
package infra
