# floodgate - make targets (see README.md)
GO      ?= go
BIN     := bin/floodgate
# Consul is built once from the Go module proxy and cached outside the clone.
CONSUL  ?= $(shell command -v consul 2>/dev/null || echo $${FLOODGATE_TOOLS:-$${XDG_CACHE_HOME:-$$HOME/.cache}/floodgate/tools}/consul-v1.22.0/consul)

.PHONY: build run demo test test-short consul bench vet clean

build:
	$(GO) build -o $(BIN) ./cmd/floodgate

## run: demo backends + gateway on configs/demo.yaml (no Consul needed); Ctrl-C stops all
run: build
	@scripts/run-demo.sh

## demo: make run + a one-minute replay of the seed's night, the per-route table and an HTML report
demo: build
	@scripts/run-demo.sh --drill

## consul: build and cache a real Consul agent (about 4 minutes, once)
consul:
	@scripts/install-consul.sh >/dev/null
	@echo "consul: $(CONSUL)"

## test: every test, with the race detector, including the ones against a real Consul agent
test: consul
	$(GO) vet ./...
	FLOODGATE_CONSUL="$(CONSUL)" $(GO) test -race -timeout 20m -count=1 ./...

## test-short: unit tests only (no Consul, no process-level integration tests)
test-short:
	$(GO) test -short -count=1 ./...

## bench: the performance comparison (direct backend, gateway, nginx, haproxy)
bench: build
	@bench/compare.sh

clean:
	rm -rf bin
