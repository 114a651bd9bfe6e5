#!/usr/bin/env bash
# make run: the three demo backends, a queue node, the deliverer and the gateway on
# configs/demo.yaml.
# No Consul needed (with CONSUL_HTTP_ADDR set the gateway also watches Consul).
# Ctrl-C stops everything.
#
# make demo (scripts/run-demo.sh --drill [floodgate bench flags]): the same, then a replay
# of the seed's night against it (about a minute), the per-route table, an HTML report in
# bin/demo-report.html, the grants' backlog draining at the delivery backend's pace, a
# reconciliation line, and everything stopped.
set -euo pipefail
drill=0
if [ "${1:-}" = "--drill" ]; then
  drill=1
  shift
fi
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

for port in 4222 8080 8081 8082 8083 9901 9902; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "make run: 127.0.0.1:$port is already in use (an earlier make run still running?)" >&2
    exit 1
  fi
done

$bin backend -kind query    -listen 127.0.0.1:8081 -log-level warn & pids+=($!)
$bin backend -kind delivery -listen 127.0.0.1:8082 -ledger "$state/grants.ledger" -log-level warn & pids+=($!)
$bin backend -kind packs    -listen 127.0.0.1:8083 -packs testdata/packs -log-level warn & pids+=($!)
$bin queue -listen 127.0.0.1:4222 -data "$state/queue" -log-level warn & pids+=($!)
$bin deliver -config configs/demo.yaml -admin 127.0.0.1:9902 -log-level warn & pids+=($!)
gwargs=()
[ $drill = 0 ] && gwargs=("$@")
$bin gateway -config configs/demo.yaml ${gwargs[@]+"${gwargs[@]}"} & pids+=($!)
gwpid=$!

for i in $(seq 1 50); do
  if curl -fsS http://127.0.0.1:9901/readyz >/dev/null 2>&1; then break; fi
  sleep 0.1
done
if [ $drill = 1 ]; then
  echo
  echo "replaying the seed's night against the demo gateway (about a minute)..."
  $bin bench -profile seed-night -report bin/demo-report.html -json bin/demo-summary.json "$@"
  echo
  echo "HTML report: bin/demo-report.html (opens offline)   summary: bin/demo-summary.json"
  echo
  echo "the night's prize claims were accepted at once; the deliverer sends them at the delivery backend's 500/s:"
  backlog() {
    curl -fsS http://127.0.0.1:9901/async 2>/dev/null | tr -d ' \n' |
      sed -n 's/.*"backlog":{"grant":{"route":"grant","pending":\([0-9]*\),"ack_pending":\([0-9]*\).*/\1 \2/p'
  }
  start=$(date +%s)
  while :; do
    read -r pending handed < <(backlog; echo) || true
    now=$(( $(date +%s) - start ))
    if [ -n "${pending:-}" ]; then
      echo "  +${now}s  backlog ${pending} waiting, ${handed} being delivered"
      if [ "$pending" = 0 ] && [ "$handed" = 0 ]; then break; fi
    fi
    if [ "$now" -ge 300 ]; then echo "  the backlog did not drain within 5 minutes"; break; fi
    sleep 5
  done
  echo
  echo "reconciliation (accepted grants in the queue and the journal against the delivery backend's ledger):"
  $bin reconcile -config configs/demo.yaml -json || true
  echo "the gateway's own count: http://127.0.0.1:9901/metrics (floodgate_requests_total) - stopping now"
  exit 0
fi
cat <<MSG

floodgate demo is up (Ctrl-C stops it):
  traffic     http://127.0.0.1:8080   routes: /lottery /grant /vip /info /report
  admin       http://127.0.0.1:9901/  (dashboard)  /metrics  /config  /events  /readyz  /async
  backends    query 127.0.0.1:8081  delivery 127.0.0.1:8082  packs 127.0.0.1:8083
  queue       nats://127.0.0.1:4222   deliverer http://127.0.0.1:9902/status
  try         curl -i 'http://127.0.0.1:8080/lottery?uin=10001&adtag=wechat'
              curl -i -X POST -H 'Idempotency-Key: claim-1' 'http://127.0.0.1:8080/grant?user=10001&prize=red'
              bin/floodgate reconcile -config configs/demo.yaml
  reload      kill -HUP ${gwpid}   (after editing configs/demo.yaml)

MSG
wait -n "${pids[@]}" || true
