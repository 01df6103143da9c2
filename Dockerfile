# The sidecar-injector image for users with Docker: the same contents as
# `make images` (which builds it without a container engine, for
# linux/amd64 and linux/arm64, reproducibly, with an SBOM): the static
# binaries (sidecar-injector, and sidecar-injector-webhook which the chart
# runs for the webhook) on an empty base, LICENSE and NOTICE, user 65532. The root
# filesystem comes from the same Go builder (hack/images --unpack), so the
# two cannot drift; only the image metadata below is repeated.
#   docker build -t sidecar-injector:dev --build-arg VERSION=$(git describe --tags --always) .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG SOURCE_DATE_EPOCH=0
ARG TARGETARCH
RUN go run ./hack/images --images sidecar-injector --platforms "linux/${TARGETARCH:-amd64}" \
      --version "${VERSION}" --revision unknown --out /out --unpack /rootfs

FROM scratch
COPY --from=build /rootfs/sidecar-injector/ /
# 65532: no name, no home, no shell; the chart also sets runAsNonRoot and a
# read-only root filesystem.
USER 65532:65532
ENTRYPOINT ["/sidecar-injector"]
