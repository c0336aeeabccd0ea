# chatfleet — see README.md. `make run` starts the platform locally, `make test` runs every test.
SHELL := /bin/bash
GO    ?= go
# VERSION: the release the last git tag names (v1.1.0 -> 1.1.0; 1.1.0-3-gabcdef0 three commits
# after it); without a tag, the source's own chatfleet.Version. CHANGELOG.md lists the releases.
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null | sed 's/^v//')
LDFLAGS := -s -w $(if $(VERSION),-X github.com/chatfleet/chatfleet.Version=$(VERSION))
BIN   := bin

.PHONY: run test vet fmt-check build bench bench-quick soak clean lambdas web images

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./fleet/cmd/chatserver ./fleet/cmd/loadbalancer

# run: the whole platform locally (localstack/): hls.js for the web client when npm is there, a
# demo HLS stream when ffmpeg is there, the fleet binaries, then the stack itself.
run: web build
	-./scripts/demo-hls.sh
	$(GO) build -o $(BIN)/localstack ./localstack
	./$(BIN)/localstack

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The fuzz runs are bounded by a count of executions (about 4 s each on a
# quiet machine), not by time: with a duration, Go 1.26's fuzz coordinator
# can fail a run with "context deadline exceeded" when the time runs out
# while a worker is busy (go.dev/issue/75804, fixed in Go 1.27).
test: fmt-check vet
	$(GO) test -race -timeout 15m ./...
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=50000x ./protocol
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=100000x ./fleet/internal/ipc
	$(GO) test -run='^$$' -fuzz='^FuzzHeartbeat$$' -fuzztime=20000x ./fleet/internal/lb
	$(GO) test -run='^$$' -fuzz='^FuzzCreateBody$$' -fuzztime=8000x ./fleet/internal/master
	$(GO) test -run='^$$' -fuzz='^FuzzUnmarshal$$' -fuzztime=30000x ./httpx

# soak: the full soak of docs/reliability.md, without the race detector: 10,000 viewers over 20
# rooms of one host for CHATFLEET_SOAK (10m), a tenth of them replaced every minute; no lost
# message, no growth of file descriptors, threads or memory. `make test` runs its short form.
soak:
	CHATFLEET_SOAK=$${CHATFLEET_SOAK:-10m} $(GO) test -run='^TestSoak$$' -count=1 -timeout 60m -v ./faults

# web: hls.js from npm (web/package-lock.json) into web/static/vendor/, embedded by the next build.
web:
	./web/build.sh

# bench: the load benchmark (docs/performance.md): builds and starts its own chatserver on free
# loopback ports, prints one table and writes bench/results.json; under 10 minutes.
# bench-quick: the short regression run, under a minute. Room profiles: `make bench BENCH_FLAGS=-pprof=bench`.
bench:
	$(GO) build -o $(BIN)/chatbench ./fleet/cmd/chatbench
	./$(BIN)/chatbench -out bench/results.json $(BENCH_FLAGS)

bench-quick:
	$(GO) build -o $(BIN)/chatbench ./fleet/cmd/chatbench
	./$(BIN)/chatbench -quick -out bench/results-quick.json $(BENCH_FLAGS)

# images: every image of infra/docker/, tagged chatfleet/NAME:dev (chatserver, loadbalancer,
# devstore, lambda-rooms, lambda-admin). IMAGE_BASES=production (default) builds the Dockerfiles
# as they are, Go compiling in the golang image on distroless (needs an image registry and
# BuildKit); IMAGE_BASES=local builds their target `prebuilt` from binaries built here, on a
# static base made here, for a machine that reaches no registry (CI). See scripts/images.sh.
IMAGE_BASES ?= production
images:
	IMAGE_BASES=$(IMAGE_BASES) VERSION=$(VERSION) GO=$(GO) ./scripts/images.sh

lambdas:
	@for f in functions/*/main.go; do d=$$(dirname $$f); \
	  GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags '$(LDFLAGS)' -o $$d/bootstrap ./$$d || exit 1; \
	done

clean:
	rm -rf $(BIN) .data functions/*/bootstrap
