# The sidecar-injector image: one static binary (webhook, xds and the
# offline commands) on an empty base, running as a non-root user.
#   docker build -t sidecar-injector:dev --build-arg VERSION=$(git describe --tags --always) .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/sidecar-injector/sidecar-injector/internal/version.version=${VERSION}" \
      -o /out/sidecar-injector ./cmd/sidecar-injector

FROM scratch
COPY --from=build /out/sidecar-injector /sidecar-injector
COPY LICENSE NOTICE /licenses/
# 65532: no name, no home, no shell; the chart also sets runAsNonRoot and a
# read-only root filesystem.
USER 65532:65532
ENTRYPOINT ["/sidecar-injector"]
