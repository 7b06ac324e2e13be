# traefik-sd. `make demo` shows it working, `make test` runs every test.
# Both install what they need first (etcd, Prometheus and redis-server from Debian, Traefik
# built from its Go module and cached outside the checkout).

GO        ?= go
GOFLAGS   += -mod=vendor
export GOFLAGS
BIN       := bin/traefik-sd
FUZZTIME  ?= 100000x

.PHONY: all build deps test unit e2e fuzz bench demo vet vendor clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./sidecar/cmd/traefik-sd

# Prints the cached Traefik binary's path on its last line.
deps:
	@bash scripts/install-deps.sh

vet:
	$(GO) vet ./...

unit: vet
	$(GO) test -count=1 -timeout 10m ./plugin/... ./sidecar/... ./internal/...

test: deps build unit fuzz e2e

fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

e2e: deps build
	TRAEFIK_BIN="$$(bash scripts/install-deps.sh | tail -n 1)" TRAEFIK_SD_BIN="$(CURDIR)/$(BIN)" \
		$(GO) test -tags e2e -count=1 -timeout 30m -v ./e2e/...

bench: deps build
	@bash scripts/bench.sh

demo: deps build
	TRAEFIK_BIN="$$(bash scripts/install-deps.sh | tail -n 1)" TRAEFIK_SD_BIN="$(CURDIR)/$(BIN)" \
		$(GO) run ./e2e/cmd/demo

vendor:
	GOFLAGS= $(GO) mod tidy
	GOFLAGS= $(GO) mod vendor

clean:
	rm -rf bin
