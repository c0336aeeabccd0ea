# syntax=docker/dockerfile:1
# loadbalancer: one load-balancer instance. Build from the repository root:
#   docker build -f infra/docker/loadbalancer.Dockerfile -t chatfleet/loadbalancer .
# A static binary on distroless/static (CA certificates, user nonroot 65532).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=1.0.0
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/chatfleet/chatfleet.Version=${VERSION}" \
      -o /out/loadbalancer ./fleet/cmd/loadbalancer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/loadbalancer /usr/local/bin/loadbalancer
ENV PORT=2000
USER nonroot:nonroot
EXPOSE 2000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/loadbalancer"]
