#!/usr/bin/env bash
# images.sh: builds every image of infra/docker/ (`make images`), tagged
# chatfleet/NAME:$TAG (dev): chatserver, loadbalancer, devstore, lambda-rooms,
# lambda-admin.
#
#   IMAGE_BASES=production (default): the Dockerfiles' default target, on
#     their default bases (the golang builder, distroless/static): Go compiles
#     inside Docker. Needs an image registry and BuildKit (docker buildx).
#     GO_IMAGE and RUNTIME_IMAGE, when set, replace the bases; BUILD_FLAGS are
#     added to each `docker build` (e.g. --network host where dockerd has no bridge).
#   IMAGE_BASES=local: no registry needed (CI): the target `prebuilt` of the
#     same Dockerfiles, whose binaries are built here as `make build` builds
#     them (static, for this machine's architecture), on a static base made
#     here once: chatfleet-local/static:1, an /etc/passwd and /etc/group with
#     root and nonroot (65532) as distroless has, this machine's CA
#     certificates and /tmp, imported with `docker import`.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${TAG:-dev}
GO=${GO:-go}
VERSION=${VERSION:-}
LDFLAGS="-s -w${VERSION:+ -X github.com/chatfleet/chatfleet.Version=$VERSION}"
# The emulator's version: the one .ci/run and functions/lambda_test.go use.
RIE=github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d
LOCAL_BASE=chatfleet-local/static:1

timed() { # timed LABEL CMD...: runs CMD, says how long it took
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "images: $label: $((SECONDS - start))s" >&2
}

build_production() {
  local args=(--build-arg "VERSION=${VERSION:-1.0.0}")
  if [ -n "${GO_IMAGE:-}" ]; then args+=(--build-arg "GO_IMAGE=$GO_IMAGE"); fi
  if [ -n "${RUNTIME_IMAGE:-}" ]; then args+=(--build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE"); fi
  # shellcheck disable=SC2206 # BUILD_FLAGS is a list of flags
  args+=(${BUILD_FLAGS:-})
  for name in chatserver loadbalancer devstore; do
    timed "chatfleet/$name" docker build "${args[@]}" -f "infra/docker/$name.Dockerfile" -t "chatfleet/$name:$TAG" .
  done
  for fn in rooms admin; do
    timed "chatfleet/lambda-$fn" docker build "${args[@]}" --build-arg "FUNCTION=$fn" -f infra/docker/lambda.Dockerfile -t "chatfleet/lambda-$fn:$TAG" .
  done
}

# local_base makes $LOCAL_BASE unless it exists.
local_base() {
  docker image inspect "$LOCAL_BASE" >/dev/null 2>&1 && return
  local d
  d=$(mktemp -d)
  mkdir -p "$d/etc/ssl/certs" "$d/tmp" "$d/home/nonroot"
  chmod 0755 "$d" "$d/etc" "$d/etc/ssl" "$d/etc/ssl/certs" "$d/home"
  chmod 1777 "$d/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$d/etc/group"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/"
  fi
  tar --numeric-owner --owner=0 --group=0 -C "$d" -c . | docker import -m "chatfleet local static base (scripts/images.sh)" - "$LOCAL_BASE" >/dev/null
  rm -rf "$d"
}

build_local() {
  local ctx
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' RETURN
  mkdir -p "$ctx/bin/lambda/rooms" "$ctx/bin/lambda/admin"
  export CGO_ENABLED=0 GOOS=linux
  local start=$SECONDS
  "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$ctx/bin/" ./fleet/cmd/chatserver ./fleet/cmd/loadbalancer ./devstore/cmd/devstore
  for fn in rooms admin; do
    "$GO" build -tags lambda.norpc -trimpath -ldflags "$LDFLAGS" -o "$ctx/bin/lambda/$fn/bootstrap" "./functions/$fn"
  done
  GOBIN="$ctx/bin" "$GO" install "$RIE"
  echo "images: the binaries: $((SECONDS - start))s" >&2
  timed "the base $LOCAL_BASE" local_base
  # The builds share nothing but the base: run them side by side.
  local args=(-q --target prebuilt --build-arg "RUNTIME_IMAGE=$LOCAL_BASE") pids=()
  for name in chatserver loadbalancer devstore; do
    timed "chatfleet/$name:$TAG" docker build "${args[@]}" -f "infra/docker/$name.Dockerfile" -t "chatfleet/$name:$TAG" "$ctx" >/dev/null &
    pids+=($!)
  done
  for fn in rooms admin; do
    timed "chatfleet/lambda-$fn:$TAG" docker build "${args[@]}" --build-arg "FUNCTION=$fn" -f infra/docker/lambda.Dockerfile -t "chatfleet/lambda-$fn:$TAG" "$ctx" >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}

case "${IMAGE_BASES:-production}" in
  production) build_production ;;
  local) build_local ;;
  *) echo "images: IMAGE_BASES=${IMAGE_BASES} (want production or local)" >&2; exit 2 ;;
esac
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "^chatfleet/.*:$TAG " >&2 || true
