# devstore: the embedded MongoDB-compatible store (FerretDB on SQLite) alone,
# for the `dev` profile of infra/docker-compose.yml where no MongoDB image
# can be had. Development only: it has no authentication. Build from the
# repository root:
#   docker build -f infra/docker/devstore.Dockerfile -t chatfleet/devstore .
# Bases and the target `prebuilt` (CI): as in chatserver.Dockerfile.

ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM scratch AS datadir
WORKDIR /data

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=datadir --chown=65532:65532 /data /data
ENV STORE_ADDR=0.0.0.0:27017 \
    STORE_DIR=/data
USER nonroot:nonroot
EXPOSE 27017
VOLUME ["/data"]
HEALTHCHECK --interval=2s --timeout=3s --retries=15 CMD ["/usr/local/bin/devstore", "ping"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/devstore"]

# prebuilt: the binary built outside Docker (bin/devstore).
FROM runtime AS prebuilt
COPY bin/devstore /usr/local/bin/devstore

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/devstore ./devstore/cmd/devstore

# The image (the default target).
FROM runtime
COPY --from=build /out/devstore /usr/local/bin/devstore
