# traefik-sd. `make demo` shows it working, `make test` runs every test.
# Both install what they need first (etcd, Prometheus and redis-server from Debian, Traefik
# built from its Go module and cached outside the checkout).

GO        ?= go
GOFLAGS   += -mod=vendor
export GOFLAGS
BIN       := bin/traefik-sd
# --version and traefik_sd_build_info; without make, Go's own build stamp.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/traefik-sd/traefik-sd/sidecar/version.Version=$(VERSION) \
             -X github.com/traefik-sd/traefik-sd/sidecar/version.Revision=$(REVISION)
FUZZTIME  ?= 100000x

.PHONY: all build deps test unit e2e fuzz bench bench-report demo demo-plain vet vendor clean plugin-zip image dist release-test

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./sidecar/cmd/traefik-sd

# Prints the cached Traefik binary's path on its last line.
deps:
	@bash scripts/install-deps.sh
	@bash scripts/etcd-from-module.sh

vet:
	$(GO) vet ./...
	cd plugin/interpreted && $(GO) vet ./...

unit: vet
	$(GO) test -race -count=1 -timeout 15m ./plugin/... ./sidecar/... ./internal/... ./examples/... ./scripts/... ./packaging/ ./e2e/cmd/benchreport
	# The plugin under Yaegi: a module of its own, so that the plugin's
	# module requires no Yaegi (Traefik's catalog refuses it).
	cd plugin/interpreted && $(GO) test -race -count=1 -timeout 10m ./...

test: deps build unit fuzz e2e release-test

fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

# On etcd 3.6 built from its Go module, as Backend.AI deploys 3.5 or later;
# make unit's integration tests run on Debian's 3.4.
e2e: deps build
	TRAEFIK_BIN="$$(bash scripts/install-deps.sh | tail -n 1)" SIDECAR_BIN="$(CURDIR)/$(BIN)" \
		ETCD_BIN="$$(bash scripts/etcd-from-module.sh | tail -n 1)" \
		$(GO) test -tags e2e -count=1 -timeout 30m -v ./e2e/...

bench: deps build
	@bash scripts/bench.sh

# BENCHMARKS.md again from the last make bench's figures (bench.out), e.g.
# after a change to how benchreport words its verdicts.
bench-report:
	$(GO) run ./e2e/cmd/benchreport -o BENCHMARKS.md -go "$$($(GO) env GOVERSION)" < bench.out

demo: deps build
	TRAEFIK_BIN="$$(bash scripts/install-deps.sh | tail -n 1)" SIDECAR_BIN="$(CURDIR)/$(BIN)" \
		ETCD_BIN="$$(bash scripts/etcd-from-module.sh | tail -n 1)" \
		$(GO) run ./e2e/cmd/demo

# The same in front of a plain Traefik: its file provider, no etcd, no
# Backend.AI; the sidecar reads routers and services from Traefik's API.
demo-plain: deps build
	TRAEFIK_BIN="$$(bash scripts/install-deps.sh | tail -n 1)" SIDECAR_BIN="$(CURDIR)/$(BIN)" \
		$(GO) run ./e2e/cmd/demoplain

# The plugin's module zip, as the Go module proxy (and Traefik's plugin
# registry) serves it, and the hash experimental.plugins wants.
PLUGIN_VERSION ?= v0.1.0
plugin-zip:
	@mkdir -p bin
	$(GO) run ./e2e/cmd/pluginzip -version $(PLUGIN_VERSION) -o bin/traefik-sd-$(PLUGIN_VERSION).zip

# The sidecar's image (Containerfile: static binary, CA certificates, user
# 65532, no shell) built with buildah, no daemon, into local storage as
# $(IMAGE):$(VERSION) and $(IMAGE):latest; examples/kubernetes.yaml runs
# $(IMAGE):latest. `make image IMAGE=registry.example/traefik-sd`, then
# `buildah --storage-driver vfs push registry.example/traefik-sd:latest`.
IMAGE      ?= localhost/traefik-sd
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
image:
	@VERSION='$(VERSION)' REVISION='$(REVISION)' LDFLAGS='$(LDFLAGS)' IMAGE='$(IMAGE)' IMAGE_ARCH='$(IMAGE_ARCH)' \
		GO='$(GO)' bash scripts/image.sh

# Release artifacts into $(DIST)/ (emptied first), named after git describe:
# static binaries for linux/amd64 and linux/arm64, the plugin's module zip
# and its experimental.plugins entry with the hash, and SHA256SUMS.
DIST ?= dist
dist:
	@VERSION='$(VERSION)' LDFLAGS='$(LDFLAGS)' DIST='$(DIST)' GO='$(GO)' bash scripts/dist.sh

# make image and make dist, each run by a test that checks what it made
# (packaging/): the image's config and exported file system, run as its
# user; exactly the artifacts, their sums, versions and architectures.
release-test: deps
	$(GO) test -tags release -count=1 -timeout 20m -v ./packaging/

vendor:
	GOFLAGS= $(GO) mod tidy
	GOFLAGS= $(GO) mod vendor
	cd plugin/interpreted && GOFLAGS= $(GO) mod tidy && GOFLAGS= $(GO) mod vendor

clean:
	rm -rf bin dist
