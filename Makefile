# chatfleet — see README.md. `make run` starts the platform locally, `make test` runs every test.
SHELL := /bin/bash
GO    ?= go
VERSION ?= 1.0.0
LDFLAGS := -s -w -X github.com/chatfleet/chatfleet.Version=$(VERSION)
BIN   := bin

.PHONY: run test vet fmt-check build bench bench-quick soak clean lambdas

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./fleet/cmd/...

run: build
	./scripts/run.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: fmt-check vet
	$(GO) test -race -timeout 15m ./...

lambdas:
	@for f in functions/*/main.go; do d=$$(dirname $$f); \
	  GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags '$(LDFLAGS)' -o $$d/bootstrap ./$$d || exit 1; \
	done

clean:
	rm -rf $(BIN) .data functions/*/bootstrap
