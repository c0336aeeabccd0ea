# lambda: one control API function (FUNCTION: rooms or admin) the way SAM
# runs it locally: the provided.al2023 layout, its `bootstrap` in /var/task,
# under the AWS Lambda Runtime Interface Emulator (aws-lambda-rie), which
# answers invocations on port 8080:
#   docker build -f infra/docker/lambda.Dockerfile --build-arg FUNCTION=rooms -t chatfleet/lambda-rooms .
#   docker run --network host --env-file ENV chatfleet/lambda-rooms
#   curl -d @events/rooms-list.json http://127.0.0.1:8080/2015-03-31/functions/function/invocations
# For local runs only: the deployment ships the same bootstrap as a zip
# (template.yaml, `sam build`). Bases and the target `prebuilt` (CI): as in
# chatserver.Dockerfile.

ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUNTIME_IMAGE} AS runtime
# As the template's Globals: Timeout 20, MemorySize 256.
ENV LAMBDA_TASK_ROOT=/var/task \
    LAMBDA_RUNTIME_DIR=/var/runtime \
    AWS_LAMBDA_FUNCTION_TIMEOUT=20 \
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256
USER nonroot:nonroot
EXPOSE 8080
WORKDIR /var/task
ENTRYPOINT ["/usr/local/bin/aws-lambda-rie"]
CMD ["/var/task/bootstrap"]

# prebuilt: the binaries built outside Docker (bin/lambda/FUNCTION/bootstrap
# and bin/aws-lambda-rie, by scripts/images.sh).
FROM runtime AS prebuilt
ARG FUNCTION=rooms
COPY bin/aws-lambda-rie /usr/local/bin/aws-lambda-rie
COPY bin/lambda/${FUNCTION}/bootstrap /var/task/bootstrap

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG FUNCTION=rooms
ARG VERSION=1.0.0
# The emulator's version is the one .ci/run and functions/lambda_test.go use.
ARG RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -tags lambda.norpc -trimpath \
      -ldflags "-s -w -X github.com/chatfleet/chatfleet.Version=${VERSION}" \
      -o /out/bootstrap ./functions/${FUNCTION} && \
    CGO_ENABLED=0 GOBIN=/out go install \
      github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@${RIE_VERSION}

# The image (the default target).
FROM runtime
COPY --from=build /out/aws-lambda-rie /usr/local/bin/aws-lambda-rie
COPY --from=build /out/bootstrap /var/task/bootstrap
