# chatserver: the fleet host daemon. Build from the repository root:
#   docker build -f infra/docker/chatserver.Dockerfile -t chatfleet/chatserver .
# A static binary on distroless/static (CA certificates, tzdata, user nonroot
# 65532, no shell). Rooms are the same binary run again, inside the
# container. PID 1 is `chatserver init`, not the master: it reaps rooms whose
# master died and starts the master again, which re-adopts them.
#
# The bases are build arguments whose defaults are the production images.
# Where no image registry is reachable (CI), `make images IMAGE_BASES=local`
# builds the target `prebuilt` instead: the binary of `make build` copied onto
# a static base made on the machine (scripts/images.sh). Both targets share
# the stage `runtime`, everything of the image but the binary.

ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

# The state directory must belong to the runtime user before a volume is
# mounted on it (a new named volume takes the image directory's owner).
FROM scratch AS statedir
WORKDIR /var/lib/chatserver

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=statedir --chown=65532:65532 /var/lib/chatserver /var/lib/chatserver
ENV STATE_DIR=/var/lib/chatserver \
    PORT=8080 \
    ADMIN_PORT=8090
USER nonroot:nonroot
EXPOSE 8080 8090
VOLUME ["/var/lib/chatserver"]
# SIGTERM, forwarded by init, drains the rooms (STOP_DEADLINE, 15s by
# default): give docker stop more than that (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/chatserver", "init"]

# prebuilt: the binary built outside Docker (bin/chatserver of `make build`).
FROM runtime AS prebuilt
COPY bin/chatserver /usr/local/bin/chatserver

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=1.0.0
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/chatfleet/chatfleet.Version=${VERSION}" \
      -o /out/chatserver ./fleet/cmd/chatserver

# The production image (the default target).
FROM runtime
COPY --from=build /out/chatserver /usr/local/bin/chatserver
