#!/usr/bin/env bash
# make run: the three demo backends and the gateway on configs/demo.yaml.
# No Consul needed. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/floodgate
state=${FLOODGATE_STATE:-$(mktemp -d)}
pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped."
}
trap stop INT TERM EXIT

for port in 8080 8081 8082 8083 9901; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "make run: 127.0.0.1:$port is already in use (an earlier make run still running?)" >&2
    exit 1
  fi
done

$bin backend -kind query    -listen 127.0.0.1:8081 -log-level warn & pids+=($!)
$bin backend -kind delivery -listen 127.0.0.1:8082 -ledger "$state/grants.ledger" -log-level warn & pids+=($!)
$bin backend -kind packs    -listen 127.0.0.1:8083 -packs testdata/packs -log-level warn & pids+=($!)
$bin gateway -config configs/demo.yaml "$@" & pids+=($!)

for i in $(seq 1 50); do
  if curl -fsS http://127.0.0.1:9901/readyz >/dev/null 2>&1; then break; fi
  sleep 0.1
done
cat <<MSG

floodgate demo is up (Ctrl-C stops it):
  traffic     http://127.0.0.1:8080   routes: /lottery /grant /info /report
  admin       http://127.0.0.1:9901/  (dashboard)  /metrics  /config  /events  /readyz
  backends    query 127.0.0.1:8081  delivery 127.0.0.1:8082  packs 127.0.0.1:8083
  try         curl -i 'http://127.0.0.1:8080/lottery?uin=10001&adtag=wechat'
  reload      kill -HUP ${pids[3]}   (after editing configs/demo.yaml)

MSG
wait -n "${pids[@]}" || true
