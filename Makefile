# sidecar-injector: `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
BIN      := $(CURDIR)/bin
CACHE    := $(CURDIR)/.cache
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/sidecar-injector/sidecar-injector/internal/version.version=$(VERSION)
FUZZTIME ?= 60s

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## build sidecar-injector, sidecar-injector-webhook and iptables-init into bin/ (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sidecar-injector ./cmd/sidecar-injector
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sidecar-injector-webhook ./cmd/sidecar-injector-webhook
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/iptables-init ./iptables-init

.PHONY: deps
deps: ## install the system packages the tests use (apt-get, when root)
	@hack/install-deps.sh

.PHONY: tools
tools: ## build (once, cached outside the repo) etcd, kube-apiserver, kube-controller-manager and helm
	$(GO) run ./hack/testenv build

.PHONY: test
# As root every test can run (deps installs what they need), so a test that
# would skip for want of root, a tool or a kernel feature fails instead
# (internal/need); SIDECAR_INJECTOR_REQUIRE_ALL=0 in the environment overrides.
REQUIRE_ALL := $(if $(filter 0,$(shell id -u)),SIDECAR_INJECTOR_REQUIRE_ALL=$${SIDECAR_INJECTOR_REQUIRE_ALL:-1})

test: deps tools ## run every test: unit and integration with -race (real iptables, helm, gRPC), then e2e
	$(REQUIRE_ALL) GORACE=atexit_sleep_ms=0 $(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) e2e

.PHONY: e2e
e2e: tools ## end-to-end tests against a real local kube-apiserver, etcd and kube-controller-manager
	$(REQUIRE_ALL) $(GO) test -tags e2e -count=1 -timeout 30m ./test/e2e/...

DEMO_ARGS ?=
.PHONY: demo
demo: deps ## a real local control plane, the webhook and xDS server, an injected pod (DEMO_ARGS=--once to exit)
	$(GO) run ./hack/demo $(DEMO_ARGS)

.PHONY: bench-webhook
bench-webhook: ## webhook vs the null webhook under admitload: ratios into docs/benchmarks.md
	hack/bench-webhook.sh

.PHONY: bench-xds
bench-xds: ## xDS server with 1,000 / 5,000 / 10,000 / 20,000 simulated proxies: figures into docs/benchmarks.md
	hack/bench-xds/run.sh

.PHONY: chart-docs
chart-docs: ## regenerate charts/sidecar-injector/README.md from values.yaml
	$(GO) run ./hack/chartdoc charts/sidecar-injector

IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
.PHONY: images
images: ## OCI image layouts of sidecar-injector and iptables-init (IMAGE_PLATFORMS) with SPDX SBOMs in bin/images/, no container engine
	$(GO) run ./hack/images --platforms '$(IMAGE_PLATFORMS)' --version '$(VERSION)'

RELEASE_ARGS ?=
.PHONY: release-local
release-local: images tools ## rehearse a release: images and chart pushed to an OCI registry on 127.0.0.1, printed install command (RELEASE_ARGS=--exit)
	bins=$$($(GO) run ./hack/testenv build | tail -n 1); \
	$(GO) run ./hack/release --local --helm "$$bins/helm" $(RELEASE_ARGS)

ACTIONLINT_VERSION := v1.7.12
.PHONY: actionlint
actionlint: ## lint .github/workflows with actionlint (built from its Go module)
	GOBIN=$(CACHE)/bin $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	$(CACHE)/bin/actionlint -no-color .github/workflows/*.yml

.PHONY: update-golden
update-golden: ## rewrite the golden files from the current code
	$(GO) test -count=1 ./cmd/sidecar-injector ./envoy ./pkg/controller ./pkg/inject ./pkg/redirect ./pkg/webhook ./pkg/xds ./test/chart -update

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 60s) each
	@hack/fuzz.sh $(FUZZTIME)

.PHONY: lint
lint: ## go vet, gofmt and staticcheck
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@if GOBIN=$(CACHE)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@latest 2>/dev/null; then $(CACHE)/bin/staticcheck ./...; else echo "staticcheck: not installable here, skipped"; fi

.PHONY: notice
notice: ## regenerate NOTICE from go.mod and the module cache
	$(GO) run ./hack/notice > NOTICE

.PHONY: verify
verify: lint actionlint ## regenerate goldens and NOTICE and fail on any difference
	@state() { { git diff; git status --porcelain --untracked-files=all; } | sha256sum; }; \
	before=$$(state); \
	$(MAKE) update-golden notice chart-docs >/dev/null; \
	if [ "$$(state)" != "$$before" ]; then git status --short; echo "verify: generated files were out of date and have been rewritten (see git diff)"; exit 1; fi; \
	echo "verify: goldens, NOTICE and chart README are up to date"
