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
build: ## build sidecar-injector and iptables-init into bin/ (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sidecar-injector ./cmd/sidecar-injector
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/iptables-init ./iptables-init

.PHONY: deps
deps: ## install the system packages the tests use (apt-get, when root)
	@hack/install-deps.sh

.PHONY: test
test: deps ## run every test: unit and integration with -race, real iptables in network namespaces
	$(GO) test -race -count=1 ./...

.PHONY: update-golden
update-golden: ## rewrite the golden files from the current code
	$(GO) test ./pkg/inject ./pkg/redirect ./pkg/xds ./envoy -update

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
verify: lint ## regenerate goldens and NOTICE and fail on any difference
	$(MAKE) update-golden notice
	@git diff --exit-code -- . || { echo "verify: generated files are out of date (see diff above)"; exit 1; }
