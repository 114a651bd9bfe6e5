# floodgate - make targets (see README.md)
GO      ?= go
# bash with pipefail: a drill piped through grep fails when its test fails
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c
BIN     := bin/floodgate
# Consul is built once from the Go module proxy and cached outside the clone.
CONSUL  ?= $(shell command -v consul 2>/dev/null || echo $${FLOODGATE_TOOLS:-$${XDG_CACHE_HOME:-$$HOME/.cache}/floodgate/tools}/consul-v1.22.0/consul)

# Chromium (the console's browser test) and promtool (the alert rules and metrics checks)
# come from Debian packages; scripts/install-*.sh fetch them when missing.
CHROMIUM ?= /usr/bin/chromium
PROMTOOL ?= $(shell command -v promtool 2>/dev/null || echo $${FLOODGATE_TOOLS:-$${XDG_CACHE_HOME:-$$HOME/.cache}/floodgate/tools}/prometheus-deb/usr/bin/promtool)
# The version stamped into the binary: `floodgate version`.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/floodgate/floodgate/internal/version.Version=$(VERSION) -X github.com/floodgate/floodgate/internal/version.Commit=$(COMMIT)

.PHONY: build run demo test test-allocs test-short consul chromium promtool bench bench-async bench-deliver drill-crash bench-packs drill-journal drill-backlog drill-outage drill-timing drill-overload vet clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/floodgate

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
test: consul chromium promtool
	$(GO) vet ./...
	FLOODGATE_CONSUL="$(CONSUL)" FLOODGATE_CHROMIUM="$(CHROMIUM)" FLOODGATE_PROMTOOL="$(PROMTOOL)" $(GO) test -race -timeout 20m -count=1 ./...
	$(MAKE) --no-print-directory test-allocs

## test-allocs: the zero-allocation proofs (request path, each filter's Decide, the packs
## backend), which the race detector's own allocations keep out of the -race run
test-allocs:
	$(GO) test -count=1 -run 'Allocs|AllocatesNothing|Conformance' ./gateway/ ./backend/ ./filters/...

## chromium: install Debian's chromium for the console's browser test (as root, once)
chromium:
	@test -x "$(CHROMIUM)" || scripts/install-chromium.sh >/dev/null

## promtool: unpack promtool from Debian's prometheus package into the tool cache (once)
promtool:
	@test -x "$(PROMTOOL)" || scripts/install-promtool.sh >/dev/null

## test-short: unit tests only (no Consul, no process-level integration tests)
test-short:
	$(GO) test -short -count=1 ./...

## bench: the performance comparison (direct backend, gateway, nginx, haproxy)
bench: build
	@bench/compare.sh

## bench-async: the async accept path against the synchronous proxy and plain JetStream publishers
bench-async: build
	FLOODGATE_DRILL=async $(GO) test -count=1 -run TestAsyncAcceptSpeed -v -timeout 10m ./bench/ | grep -E '^ratio|_test.go:[0-9]+: |^(ok|FAIL|---)'

## drill-timing: the load measurements of make test with no way out: on a loaded machine make test retries them and, if the generator still cannot keep its schedule, skips them loudly; here that fails
drill-timing: consul
	flock /tmp/floodgate-bench.lock env FLOODGATE_STRICT_TIMING=1 FLOODGATE_CONSUL="$(CONSUL)" $(GO) test -race -count=1 -run 'TestLimiterAccuracyWholeProcess|TestDrillShapeOnDemoConfig|TestGlobalLimitSplitAcrossInstances|TestPropagation|TestDeliversAtTheConfiguredRate|TestTwoDeliverersShareTheRate' -v -timeout 20m ./bench/ ./gateway/consul/ ./internal/deliver/ | grep -E 'LOADED|NOT MEASURED|attempt|admitted|propagation|delivered|window|^(ok|FAIL|---)|--- '

## drill-backlog: 10 million grants in the queue: bytes per grant, memory, drain rate (long)
drill-backlog: build
	FLOODGATE_DRILL=backlog $(GO) test -count=1 -run TestBacklogDrill -v -timeout 120m ./bench/ | grep -E '_test.go:[0-9]+: |^(ok|FAIL|---)'

## drill-outage: the queue down for 3 minutes under load, then replayed and delivered
drill-outage: build
	FLOODGATE_OUTAGE=3m $(GO) test -count=1 -run TestQueueDownUnderLoad -v -timeout 30m ./cmd/floodgate/ | grep -E '_test.go:[0-9]+: |^(ok|FAIL|---)'

## bench-deliver: the deliverer's kept rate at 500, 1000, 2000 and 4000 grants/s (10 s windows of the real delivery backend's ledger)
bench-deliver: build
	flock /tmp/floodgate-bench.lock env FLOODGATE_DRILL=deliver-rate $(GO) test -count=1 -run TestDeliveryRateDrill -v -timeout 10m ./internal/deliver/ | grep -E 'rate .*delivered|^(ok|FAIL|---)'

## drill-crash: the kill -9 tests with 100 rounds per failpoint (make test runs 2): gateway, deliverer, reconcile
drill-crash: build
	FLOODGATE_CRASH_ROUNDS=100 $(GO) test -count=1 -run 'KilledAtEveryStep|DelivererKilled|ReconcileKilledMidRepair' -timeout 60m -v ./... | grep -E '_test.go:[0-9]+: |^(ok|FAIL|---)|--- '
	FLOODGATE_QUEUE_KILLS=100 FLOODGATE_OUTAGE=1s $(GO) test -count=1 -run TestQueueDownUnderLoad -timeout 60m -v ./cmd/floodgate/ | grep -E '_test.go:[0-9]+: |^(ok|FAIL|---)'

## bench-packs: number_pack stores side by side (Set in lines and packed, bigcache, map) at 1M and 10M, the filter at 10M, and a 100M-number load in both layouts (needs ~1.2 GB in $TMPDIR, a few minutes)
bench-packs:
	flock /tmp/floodgate-bench.lock $(GO) test -run XXX -bench 'Pack$$|PackLoad100M|Decide' -benchtime 1s -timeout 30m ./filters/number_pack/

## drill-journal: the local journal's SIGKILL and simulated power-cut tests, 500 rounds each (make test runs 20 and 8)
drill-journal:
	bash -o pipefail -c "FLOODGATE_JOURNAL_ROUNDS=500 $(GO) test -count=1 -run 'TestCrashKill|TestPowerCutSimulation' -timeout 30m -v ./internal/journal/ | grep -E 'rounds|power cuts|invented|lost|^(ok|FAIL|---)'"

## drill-overload: the backend slowed tenfold under 2x its capacity, static limits vs adaptive protection (~90 s)
drill-overload: build
	@flock /tmp/floodgate-bench.lock $(GO) run ./bench/drilloverload -bin $(BIN) -dir bin/drill-overload

clean:
	rm -rf bin

## fuzz: the native fuzz targets, FUZZTIME each (default 60s); `make test` runs their seed
## corpora (the attack corpus among them) as ordinary tests. A crasher is written to the
## package's testdata/fuzz/ and then runs in every `make test`: fix it, keep the file.
FUZZTIME ?= 60s
.PHONY: fuzz
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRequestGuard$$' -fuzztime $(FUZZTIME) -parallel 1 ./gateway/
	$(GO) test -run '^$$' -fuzz '^FuzzConfigDecode$$' -fuzztime $(FUZZTIME) -parallel 1 ./gateway/config/
	$(GO) test -run '^$$' -fuzz '^FuzzConsulConvert$$' -fuzztime $(FUZZTIME) -parallel 1 ./gateway/consul/
	$(GO) test -run '^$$' -fuzz '^FuzzKVDecode$$' -fuzztime $(FUZZTIME) -parallel 1 ./gateway/consul/
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) -parallel 1 ./internal/yamlsafe/

## drill-consul-scale: the cost of one Consul update (convert + compose) at 10k-50k keys,
## CPU time, and whether it stays linear; then a kill switch with 50k keys against a real
## Consul agent, put -> enforced p50/p99 over 100 toggles (and where the slowest toggle's
## time went); figures in bench/RESULTS.md. Each step holds the bench lock.
.PHONY: drill-consul-scale
drill-consul-scale: consul
	flock /tmp/floodgate-bench.lock env FLOODGATE_SCALE=1 $(GO) test -count=1 -run TestUpdateCostIsLinear -v ./gateway/consul/
	flock /tmp/floodgate-bench.lock $(GO) test -run '^$$' -bench 'BenchmarkUpdate|BenchmarkKVDecode' -benchtime 3x ./gateway/consul/
	flock /tmp/floodgate-bench.lock env FLOODGATE_SCALE=1 FLOODGATE_CONSUL="$(CONSUL)" $(GO) test -count=1 -timeout 30m -run TestSwitchAtScale -v ./gateway/consul/ | grep -E '_test.go:[0-9]+: |^(ok|FAIL|---)'

## drill-recovery: two real backends killed for 10 s under traffic and restarted: time until
## their routes answer again with health checks on and off (issue 11 item 15); figures in
## bench/RESULTS.md
.PHONY: drill-recovery
drill-recovery:
	flock /tmp/floodgate-bench.lock env FLOODGATE_RECOVERY_DRILL=1 $(GO) test -count=1 -run TestRecoveryAfterBackendRestart -v -timeout 10m ./gateway/ | grep -E 'health_integration_test.go:[0-9]+: |^(ok|FAIL|---)|--- '
