# syntax=docker/dockerfile:1
# chatserver: the fleet host daemon. Build from the repository root:
#   docker build -f infra/docker/chatserver.Dockerfile -t chatfleet/chatserver .
# A static binary on distroless/static (CA certificates, tzdata, user nonroot
# 65532, no shell). Rooms are the same binary run again, inside the container.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=1.0.0
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/chatfleet/chatfleet.Version=${VERSION}" \
      -o /out/chatserver ./fleet/cmd/chatserver
# The state directory must belong to the runtime user before a volume is
# mounted on it (a new named volume takes the image directory's owner).
RUN mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/chatserver /usr/local/bin/chatserver
COPY --from=build --chown=65532:65532 /out/state /var/lib/chatserver
ENV STATE_DIR=/var/lib/chatserver \
    PORT=8080 \
    ADMIN_PORT=8090
USER nonroot:nonroot
EXPOSE 8080 8090
VOLUME ["/var/lib/chatserver"]
# SIGTERM drains the rooms (STOP_DEADLINE, 15s by default): give docker stop
# more than that (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/chatserver"]
