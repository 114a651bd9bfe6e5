#!/usr/bin/env bash
# bench/pinned-profile.sh - where one gateway configuration of make bench spends its CPU.
#
#   bench/pinned-profile.sh [CONFIG...]      (default: gateway gateway-filters)
#
# For each configuration (bench/configs/<CONFIG>.yaml) it starts the query backend and wrk
# on CPU 0 and the gateway alone on CPU 1 (as compare.sh's "pinned" placement), drives it
# with make bench's request stream (wrk -t1 -c64 -s bench/configs/filters.lua: random
# users and promotion tags) for a 1 s warm-up and a 4 s measured run, and records CPU 1
# with `perf record -F 4000 -g -C 1` during the run. It prints the run's req/s and the
# hottest symbols, and leaves perf-<CONFIG>.data in PROFILE_DIR (default: a temporary
# directory, printed) for `perf report -i`. Comparing two configurations' symbols (both
# saturate CPU 1, so a share of samples is a share of the time) shows what one costs more
# than the other; bench/RESULTS.md ("Huge pages...") has an example.
#
# It takes the benchmark lock (/tmp/floodgate-bench.lock) like make bench, needs perf,
# wrk and taskset, uses bin/floodgate (make build), binds 127.0.0.1 only and stops what
# it started.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/bin/floodgate"
CONF="$ROOT/bench/configs"
[ -x "$BIN" ] || { echo "pinned-profile: $BIN missing: run make build" >&2; exit 1; }
for tool in perf wrk taskset; do
	command -v "$tool" >/dev/null || { echo "pinned-profile: $tool is not installed" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "pinned-profile: needs 2 CPUs (gateway alone on CPU 1)" >&2; exit 1; }
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(gateway gateway-filters)
OUT="${PROFILE_DIR:-$(mktemp -d /tmp/floodgate-profile.XXXXXX)}"
mkdir -p "$OUT"
exec 9>/tmp/floodgate-bench.lock
flock 9

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http URL PID
	for _ in $(seq 300); do
		kill -0 "$2" 2>/dev/null || { echo "pinned-profile: a process exited at start (see $OUT)" >&2; exit 1; }
		curl -s -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "pinned-profile: $1 does not answer" >&2
	exit 1
}

seq 10001 110000 >"$OUT/bench-users.txt" # every uin filters.lua sends
for c in "${configs[@]}"; do
	src="$CONF/$c.yaml"
	[ -f "$src" ] || { echo "pinned-profile: no $src" >&2; exit 1; }
	be=$(free_port) gw=$(free_port) adm=$(free_port)
	sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$gw/" -e "s/127\.0\.0\.1:9901/127.0.0.1:$adm/" \
		-e "s/127\.0\.0\.1:8081/127.0.0.1:$be/" -e "s#file: bench-users.txt#file: $OUT/bench-users.txt#" "$src" >"$OUT/$c.yaml"
	taskset -c 0 "$BIN" backend -kind query -listen "127.0.0.1:$be" -log-level warn >"$OUT/backend-$c.log" 2>&1 &
	bpid=$!
	PIDS+=("$bpid")
	taskset -c 1 "$BIN" gateway -config "$OUT/$c.yaml" -log-level warn >"$OUT/gateway-$c.log" 2>&1 &
	gpid=$!
	PIDS+=("$gpid")
	wait_http "http://127.0.0.1:$be/healthz" "$bpid"
	wait_http "http://127.0.0.1:$gw/info?uin=10001" "$gpid"
	taskset -c 0 wrk -t1 -c64 -d1s -s "$CONF/filters.lua" "http://127.0.0.1:$gw" >/dev/null
	perf record -q -F 4000 -g -C 1 -o "$OUT/perf-$c.data" -- sleep 4 >/dev/null 2>&1 &
	ppid=$!
	rps=$(taskset -c 0 wrk -t1 -c64 -d4s -s "$CONF/filters.lua" "http://127.0.0.1:$gw" | awk '/Requests\/sec/ {print $2}')
	wait "$ppid" || true
	kill "$gpid" "$bpid" 2>/dev/null || true
	wait "$gpid" "$bpid" 2>/dev/null || true
	echo "== $c: $rps req/s (gateway alone on CPU 1); perf data: $OUT/perf-$c.data"
	perf report -i "$OUT/perf-$c.data" --stdio --no-children --comm floodgate -g none --percent-limit 1 2>/dev/null |
		grep -v '^#' | grep -v '^$' | head -25
done
