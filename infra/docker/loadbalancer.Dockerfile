# loadbalancer: one load-balancer instance. Build from the repository root:
#   docker build -f infra/docker/loadbalancer.Dockerfile -t chatfleet/loadbalancer .
# A static binary on distroless/static (CA certificates, user nonroot 65532).
# Bases and the target `prebuilt` (CI): as in chatserver.Dockerfile.

ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUNTIME_IMAGE} AS runtime
ENV PORT=2000
USER nonroot:nonroot
EXPOSE 2000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/loadbalancer"]

# prebuilt: the binary built outside Docker (bin/loadbalancer of `make build`).
FROM runtime AS prebuilt
COPY bin/loadbalancer /usr/local/bin/loadbalancer

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=1.0.0
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/chatfleet/chatfleet.Version=${VERSION}" \
      -o /out/loadbalancer ./fleet/cmd/loadbalancer

# The production image (the default target).
FROM runtime
COPY --from=build /out/loadbalancer /usr/local/bin/loadbalancer
