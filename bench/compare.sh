#!/usr/bin/env bash
# bench/compare.sh - `make bench`: floodgate against nginx and haproxy on loopback.
#
# Measures, under the same wrk load (the same request stream for every configuration:
# bench/configs/filters.lua), in one run:
#   direct           the query backend alone (zero-alloc fasthttp; the baseline)
#   gateway          floodgate, empty chain, pipelining to the backend (bench/configs/gateway.yaml)
#   gateway-nopipe   the same with a connection per request in flight (the default; gateway-nopipe.yaml)
#   gateway-filters  floodgate, all four filters, random users and tags
#                    (bench/configs/gateway-filters.yaml + filters.lua; only when it validates)
#   gateway-adaptive gateway-filters with adaptive overload protection on the pool
#                    (bench/configs/gateway-adaptive.yaml; healthy backend, nothing shed)
#   nginx-1w         nginx, 1 worker            ("nginx" in the ratios)
#   nginx-auto       nginx, worker_processes auto
#   haproxy-t1       haproxy, nbthread 1        ("haproxy" in the ratios: the faster of t1/t2)
#   haproxy-t2       haproxy, nbthread 2
# in two placements:
#   unpinned         every process may run on every core (the scheduler decides)
#   pinned           the proxy alone on the last core; wrk and the origin backend on the
#                    others. For "direct" the backend is the server under test, so it takes
#                    the proxy's core. A Go process started under taskset sees one CPU and
#                    runs GOMAXPROCS=1, as it would in production pinned to a core.
# Every configuration runs BENCH_RUNS times (after a warm-up), round-robin across all
# configurations and both placements, so machine noise spreads evenly. The table shows the
# median req/s (min-max), the median p50/p99 latency of the runs, and the median CPU (in
# cores) that other processes on the machine used during the runs ("other load").
#
#
# Shedding a flood, in the same run (unpinned, after the throughput runs):
#   shed-gateway     floodgate, /lottery limited by token_bucket (bench/configs/gateway-shed.yaml)
#   shed-nginx       nginx (1 worker), limit_req nodelay, same rate and burst (nginx-shed.conf.tmpl)
#   shed-haproxy     haproxy (1 thread), stick-table gpc0_rate(1s), same rate (haproxy-shed.cfg.tmpl)
#   shed-gateway-1p  shed-gateway run with GOMAXPROCS=1 (not in the default set: name it in
#                    BENCH_CONFIGS; a table row, no ratio line)
#   shed-floor       bench/shedfloor: not a proxy, the floor - one thread on epoll answering
#                    every request itself (200 within the limit, the gateway's 429 beyond),
#                    nothing proxied, parsed or counted: the least CPU per answer a server
#                    on epoll spends on this kernel for these clients (optional, like shed-gateway-1p;
#                    prints "ratio shed-floor/shed-nginx": what an epoll design can reach at most)
# each offered BENCH_SHED_FACTOR x BENCH_SHED_LIMIT requests/s open-loop by `floodgate bench`
# (bench/configs/shed-profile.yaml: random users) for BENCH_SHED_DURATION, BENCH_RUNS times,
# interleaved. Per configuration: admitted/s over the steady seconds (the first and the last
# second of each run left out: the burst and the drain), which must be the limit +-1%;
# rejects answered per second and per CPU-second of the proxy (utime+stime of the proxy's
# processes from /proc/<pid>/stat over the run, nginx's master and worker together); p99 of
# admitted and of rejected answers (floodgate bench measures from the intended send time).
#
# The output ends with the ratio lines of the operator contract (PRODUCT.md), for the
# unpinned placement:   ratio <a>/<b> = <x.xx>
# The pinned ones are printed just before them as:   pinned: ratio <a>/<b> = <x.xx>
# and the latency ratios (lower is better):   ratio p99 gateway/nginx = <x.xx>, ratio p99.9 ...
# The shedding ratios are rejects per CPU-second:  ratio shed-gateway/shed-nginx = <x.xx>
#
# Settings (environment): BENCH_RUNS (3), BENCH_DURATION (5s), BENCH_WARMUP (1s),
# BENCH_CONNS (64), BENCH_THREADS (1), BENCH_PLACEMENTS ("unpinned pinned"),
# BENCH_CONFIGS (all of the above), BENCH_RESULTS (bench/RESULTS.md; "" = do not write),
# BENCH_SHED_LIMIT (1000 requests/s), BENCH_SHED_FACTOR (10), BENCH_SHED_DURATION (10s).
# Missing tools (wrk, nginx, haproxy, taskset, ss) are installed with apt-get; bin/floodgate
# is built when missing. Everything binds to 127.0.0.1 on free ports; every process the
# script starts is stopped on exit, on Ctrl-C and on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/bin/floodgate"
CONF="$ROOT/bench/configs"

RUNS="${BENCH_RUNS:-3}"
DURATION="${BENCH_DURATION:-5s}"
WARMUP="${BENCH_WARMUP:-1s}"
CONNS="${BENCH_CONNS:-64}"
THREADS="${BENCH_THREADS:-1}"
PLACEMENTS="${BENCH_PLACEMENTS:-unpinned pinned}"
CONFIGS="${BENCH_CONFIGS:-direct gateway gateway-nopipe gateway-filters gateway-adaptive nginx-1w nginx-auto haproxy-t1 haproxy-t2 shed-gateway shed-nginx shed-haproxy}"
SHED_LIMIT="${BENCH_SHED_LIMIT:-1000}"
SHED_FACTOR="${BENCH_SHED_FACTOR:-10}"
SHED_DURATION="${BENCH_SHED_DURATION:-10s}"
# The throughput configurations and the shedding ones (shed-*) run in separate loops.
THRU_CONFIGS="" SHED_CONFIGS=""
for c in $CONFIGS; do
	case "$c" in
	shed-gateway | shed-gateway-1p | shed-nginx | shed-haproxy | shed-floor) SHED_CONFIGS+="$c " ;;
	shed-*) echo "compare: error: unknown configuration $c" >&2; exit 1 ;;
	*) THRU_CONFIGS+="$c " ;;
	esac
done
[[ "$SHED_LIMIT" =~ ^[1-9][0-9]*$ ]] || { echo "compare: error: BENCH_SHED_LIMIT must be a positive integer, got '$SHED_LIMIT'" >&2; exit 2; }
[[ "$SHED_FACTOR" =~ ^[1-9][0-9]*$ ]] || { echo "compare: error: BENCH_SHED_FACTOR must be a positive integer, got '$SHED_FACTOR'" >&2; exit 2; }
RESULTS="${BENCH_RESULTS-$ROOT/bench/RESULTS.md}"

log() { printf '%s\n' "compare: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools ---------------------------------------------------------------------------
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
fi
APT_UPDATED=0
apt_install() { # apt_install PKG... ; apt-get update only if the first try fails
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
	log "installing $* with apt-get"
	if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; then
		if [ "$APT_UPDATED" = 0 ]; then
			APT_UPDATED=1
			$SUDO apt-get update -q >/dev/null 2>&1 || true
		fi
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1
	fi
}
need() { # need COMMAND PKG [ALT_PKG]
	local cmd="$1" pkg="$2" alt="${3:-}"
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] && return 0
	apt_install "$pkg" || { [ -n "$alt" ] && apt_install "$alt"; } || die "could not install $pkg${alt:+ or $alt}"
}
export PATH="$PATH:/usr/sbin:/sbin"
need wrk wrk
need nginx nginx-light nginx
need haproxy haproxy
need taskset util-linux
need ss iproute2
need pgrep procps
[ -n "$SHED_CONFIGS" ] && need jq jq
if [ ! -x "$BIN" ]; then
	log "building bin/floodgate"
	(cd "$ROOT" && ${GO:-go} build -o bin/floodgate ./cmd/floodgate)
fi
if [[ " $SHED_CONFIGS " == *" shed-floor "* ]]; then
	log "building bin/shedfloor"
	(cd "$ROOT" && ${GO:-go} build -o bin/shedfloor ./bench/shedfloor)
fi

NCPU="$(nproc)"
if [ "$NCPU" -lt 2 ] && [[ " $PLACEMENTS " == *" pinned "* ]]; then
	log "note: 1 CPU - the pinned placement needs 2; skipping it"
	PLACEMENTS="${PLACEMENTS//pinned/}"
fi
PROXY_CPU=$((NCPU - 1))
LOAD_CPUS="0"
[ "$NCPU" -gt 2 ] && LOAD_CPUS="0-$((NCPU - 2))"

# --- processes, ports, cleanup --------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/floodgate-bench.XXXXXX")"
PIDS=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		local alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ "$alive" = 0 ] && break
		sleep 0.2
	done
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	if [ "$rc" != 0 ] && [ -d "$WORK" ]; then
		log "logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TAKEN=" "
# Ports come from below the kernel's ephemeral range (so that no outgoing connection holds
# them) and must not appear in any socket, listening or not.
EPH_LOW="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
PORT_LOW=20000
[ "$EPH_LOW" -gt $((PORT_LOW + 2000)) ] || PORT_LOW=$((EPH_LOW > 12000 ? EPH_LOW - 10000 : 2000))
free_port() { # a loopback port no socket uses (and that this script did not hand out)
	local p
	for _ in $(seq 200); do
		p=$((PORT_LOW + RANDOM % (EPH_LOW - PORT_LOW)))
		case "$TAKEN" in *" $p "*) continue ;; esac
		if ! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
			TAKEN="$TAKEN$p "
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

wait_port() { # wait_port NAME PID PORT
	local name="$1" pid="$2" port="$3"
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || { tail -5 "$WORK/$name.log" >&2 || true; die "$name exited at start"; }
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "$name did not listen on 127.0.0.1:$port"
}

start() { # start NAME PIN(-|cpulist) CMD... ; runs CMD in the background, logs to $WORK/NAME.log
	local name="$1" pin="$2"
	shift 2
	if [ "$pin" = - ]; then
		"$@" >"$WORK/$name.log" 2>&1 &
	else
		taskset -c "$pin" "$@" >"$WORK/$name.log" 2>&1 &
	fi
	PIDS+=("$!")
	LASTPID=$!
}

declare -A TARGET   # "placement/config" -> port
declare -A SKIPNOTE

start_backend() { # start_backend NAME PIN -> BACKEND_PORT
	BACKEND_PORT="$(free_port)"
	start "$1" "$2" "$BIN" backend -kind query -listen "127.0.0.1:$BACKEND_PORT" -log-level warn
	wait_port "$1" "$LASTPID" "$BACKEND_PORT"
}

render_gateway() { # render_gateway SRC DST PORT ADMIN BACKEND
	sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$3/" -e "s/127\.0\.0\.1:9901/127.0.0.1:$4/" \
		-e "s/127\.0\.0\.1:8081/127.0.0.1:$5/" -e "s#file: bench-users.txt#file: $WORK/bench-users.txt#" "$1" >"$2"
}

# start_proxies PLACEMENT PIN BACKEND_PORT: every proxy configuration of one placement.
start_proxies() {
	local pl="$1" pin="$2" be="$3" c port admin f
	for c in $THRU_CONFIGS; do
		case "$c" in
		direct) ;;
		gateway | gateway-nopipe | gateway-filters | gateway-adaptive)
			[ -n "${SKIPNOTE[$c]:-}" ] && continue
			port="$(free_port)"
			admin="$(free_port)"
			f="$WORK/$pl-$c.yaml"
			render_gateway "$CONF/$c.yaml" "$f" "$port" "$admin" "$be"
			start "$pl-$c" "$pin" "$BIN" gateway -config "$f" -log-level warn
			wait_port "$pl-$c" "$LASTPID" "$port"
			TARGET[$pl/$c]=$port
			;;
		nginx-1w | nginx-auto)
			port="$(free_port)"
			mkdir -p "$WORK/$pl-$c"
			local workers=1
			[ "$c" = nginx-auto ] && workers=auto
			sed -e "s#@WORKERS@#$workers#" -e "s#@LISTEN@#127.0.0.1:$port#" \
				-e "s#@BACKEND@#127.0.0.1:$be#" -e "s#@DIR@#$WORK/$pl-$c#g" \
				"$CONF/nginx.conf.tmpl" >"$WORK/$pl-$c/nginx.conf"
			start "$pl-$c" "$pin" nginx -p "$WORK/$pl-$c" -e "$WORK/$pl-$c/error.log" -c "$WORK/$pl-$c/nginx.conf"
			wait_port "$pl-$c" "$LASTPID" "$port"
			TARGET[$pl/$c]=$port
			;;
		haproxy-t1 | haproxy-t2)
			port="$(free_port)"
			sed -e "s#@NBTHREAD@#${c#haproxy-t}#" -e "s#@LISTEN@#127.0.0.1:$port#" \
				-e "s#@BACKEND@#127.0.0.1:$be#" "$CONF/haproxy.cfg.tmpl" >"$WORK/$pl-$c.cfg"
			start "$pl-$c" "$pin" haproxy -db -f "$WORK/$pl-$c.cfg"
			wait_port "$pl-$c" "$LASTPID" "$port"
			TARGET[$pl/$c]=$port
			;;
		*) die "unknown configuration $c" ;;
		esac
	done
}

# gateway-adaptive: only when its configuration validates.
if [[ " $CONFIGS " == *" gateway-adaptive "* ]]; then
	if ! out="$("$BIN" validate -config "$CONF/gateway-adaptive.yaml" 2>&1)"; then
		SKIPNOTE[gateway-adaptive]="skipped: bench/configs/gateway-adaptive.yaml does not validate: $(printf '%s' "$out" | head -1 | sed 's#^.*gateway-adaptive.yaml:##')"
		log "note: gateway-adaptive skipped: ${SKIPNOTE[gateway-adaptive]}"
	fi
fi
# gateway-filters: only when its configuration validates (the filters may not have landed).
if [[ " $CONFIGS " == *" gateway-filters "* || " $CONFIGS " == *" gateway-adaptive "* ]]; then
	if out="$("$BIN" validate -config "$CONF/gateway-filters.yaml" 2>&1)"; then
		seq 10001 110000 >"$WORK/bench-users.txt" # every uin filters.lua sends
	else
		SKIPNOTE[gateway-filters]="skipped: bench/configs/gateway-filters.yaml does not validate: $(printf '%s' "$out" | head -1 | sed 's#^.*gateway-filters.yaml:##')"
		log "note: gateway-filters skipped: ${SKIPNOTE[gateway-filters]}"
	fi
fi

[ -n "$THRU_CONFIGS" ] || PLACEMENTS=""
for pl in $PLACEMENTS; do
	case "$pl" in
	unpinned)
		start_backend backend-unpinned -
		TARGET[unpinned/direct]=$BACKEND_PORT
		start_proxies unpinned - "$BACKEND_PORT"
		;;
	pinned)
		start_backend backend-direct-pinned "$PROXY_CPU" # direct: the backend is the server under test
		TARGET[pinned/direct]=$BACKEND_PORT
		start_backend backend-pinned "$LOAD_CPUS"        # origin of the pinned proxies, beside wrk
		start_proxies pinned "$PROXY_CPU" "$BACKEND_PORT"
		;;
	*) die "unknown placement $pl (want unpinned and/or pinned)" ;;
	esac
done

# --- load ------------------------------------------------------------------------------
# The machine may be shared: every run also measures the CPU that processes other than
# this benchmark's (wrk, the backends, the proxies) used meanwhile, in cores ("other").
# Runs on a busy machine say so in the table; their figures are noisier.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
our_ticks() { # CPU ticks of every process this script started, and of their children
	local p all=()
	for p in "${PIDS[@]}"; do
		all+=("$p")
		all+=($(pgrep -P "$p" 2>/dev/null || true))
	done
	for p in "${all[@]}"; do cat "/proc/$p/stat" 2>/dev/null || true; done |
		awk '{ sub(/^.*\) /, ""); s += $12 + $13 } END { print s + 0 }'
}

# wrk_run PLACEMENT CONFIG DURATION -> prints "rps p50ms p99ms errors"
wrk_run() {
	local pl="$1" c="$2" d="$3" port="${TARGET[$1/$2]}" url script=() pin=()
	# Every configuration gets the same request stream (filters.lua: /info with random
	# user numbers and promotion tags), so that wrk, which shares the machine, costs the
	# same in every run and the ratios compare the proxies alone.
	url="http://127.0.0.1:$port/info"
	script=(-s "$CONF/filters.lua")
	[ "$pl" = pinned ] && pin=(taskset -c "$LOAD_CPUS")
	"${pin[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$d" --latency "${script[@]}" "$url" 2>&1 |
		awk '
		function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
		/^ +50%/ { p50 = ms($2) }
		/^ +99%/ { p99 = ms($2) }
		/^Requests\/sec:/ { rps = $2 }
		/Non-2xx or 3xx responses:/ { err += $NF }
		/Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
		/^tail p99.9 / { p999 = $3 / 1000 }
		END { if (rps == "") { printf "0 0 0 -1 0" } else printf "%.0f %.3f %.3f %d %.3f", rps, p50, p99, err, p999 }'
	# wrk's own CPU: this subshell's waited-for children
	awk '{ sub(/^.*\) /, ""); printf " %d\n", $14 + $15 }' "/proc/$BASHPID/stat"
}

ACTIVE=()
for pl in $PLACEMENTS; do
	for c in $THRU_CONFIGS; do
		[ -n "${SKIPNOTE[$c]:-}" ] && continue
		ACTIVE+=("$pl/$c")
	done
done

total=$(( ${#ACTIVE[@]} * RUNS ))
[ "${#ACTIVE[@]}" -gt 0 ] && log "$(date -u +%FT%TZ) $NCPU CPUs; wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP), $RUNS runs of ${#ACTIVE[@]} configurations, interleaved ($total runs)"
declare -A R
n=0
for run in $(seq "$RUNS"); do
	for k in "${ACTIVE[@]}"; do
		pl="${k%%/*}" c="${k#*/}"
		n=$((n + 1))
		wrk_run "$pl" "$c" "$WARMUP" >/dev/null
		b0="$(busy_ticks)" o0="$(our_ticks)" t0="$(date +%s%N)"
		res="$(wrk_run "$pl" "$c" "$DURATION")"
		b1="$(busy_ticks)" o1="$(our_ticks)" t1="$(date +%s%N)"
		# res: rps p50 p99 errors p99.9 wrk_ticks -> rps p50 p99 errors other_cores p99.9
		res="$(echo "$res" | awk -v b="$((b1 - b0))" -v o="$((o1 - o0))" -v hz="$(getconf CLK_TCK)" -v ns="$((t1 - t0))" \
			'{ other = (b - o - $6) / hz / (ns / 1e9); if (other < 0) other = 0; printf "%s %s %s %s %.2f %s\n", $1, $2, $3, $4, other, $5 }')"
		R[$k/$run]="$res"
		log "[$n/$total] run $run $(printf '%-26s' "$k") req/s=$(echo "$res" | awk '{ printf "%s p50=%sms p99=%sms p99.9=%sms errors=%s other=%s cores", $1, $2, $3, $6, $4, $5 }')"
	done
done

# --- shedding a flood -------------------------------------------------------------------
SHED_BURST=$(( SHED_LIMIT / 10 > 1 ? SHED_LIMIT / 10 : 1 ))
SHED_OFFERED=$(( SHED_LIMIT * SHED_FACTOR ))
declare -A SHED_PID SR
proc_ticks() { # "total kernel": CPU ticks (utime+stime, and stime alone) of a process and its children
	local p="$1"
	for q in "$p" $(pgrep -P "$p" 2>/dev/null || true); do cat "/proc/$q/stat" 2>/dev/null || true; done |
		awk '{ sub(/^.*\) /, ""); s += $12 + $13; k += $13 } END { print s + 0, k + 0 }'
}
children_ticks() { awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$$/stat"; }
start_shed() { # start_shed BACKEND_PORT: the shed-* proxies, unpinned
	local be="$1" c port admin d
	for c in $SHED_CONFIGS; do
		port="$(free_port)"
		case "$c" in
		shed-gateway | shed-gateway-1p)
			admin="$(free_port)"
			render_gateway "$CONF/gateway-shed.yaml" "$WORK/$c.yaml" "$port" "$admin" "$be"
			sed -i -e "s/token_bucket: {rate: 1000, burst: 100}/token_bucket: {rate: $SHED_LIMIT, burst: $SHED_BURST}/" "$WORK/$c.yaml"
			grep -q "token_bucket: {rate: $SHED_LIMIT, burst: $SHED_BURST}" "$WORK/$c.yaml" || die "gateway-shed.yaml: no 'token_bucket: {rate: 1000, burst: 100}' line to set the limit in"
			if [ "$c" = shed-gateway-1p ]; then
				start "$c" - env GOMAXPROCS=1 "$BIN" gateway -config "$WORK/$c.yaml" -log-level warn
			else
				start "$c" - "$BIN" gateway -config "$WORK/$c.yaml" -log-level warn
			fi
			;;
		shed-floor)
			start "$c" - "$ROOT/bin/shedfloor" -listen "127.0.0.1:$port" -rate "$SHED_LIMIT" -burst "$SHED_BURST"
			;;
		shed-nginx)
			d="$WORK/$c"
			mkdir -p "$d"
			sed -e "s#@LISTEN@#127.0.0.1:$port#" -e "s#@BACKEND@#127.0.0.1:$be#" -e "s#@DIR@#$d#g" \
				-e "s#@LIMIT@#$SHED_LIMIT#" -e "s#@BURST@#$SHED_BURST#" "$CONF/nginx-shed.conf.tmpl" >"$d/nginx.conf"
			start "$c" - nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf"
			;;
		shed-haproxy)
			sed -e "s#@LISTEN@#127.0.0.1:$port#" -e "s#@BACKEND@#127.0.0.1:$be#" -e "s#@LIMIT@#$SHED_LIMIT#" \
				"$CONF/haproxy-shed.cfg.tmpl" >"$WORK/$c.cfg"
			start "$c" - haproxy -db -f "$WORK/$c.cfg"
			;;
		esac
		wait_port "$c" "$LASTPID" "$port"
		SHED_PID[$c]=$LASTPID
		TARGET[shed/$c]=$port
	done
}

# shed_run CONFIG DURATION JSON -> prints the proxy's CPU ticks over the run: "total kernel"
shed_run() {
	local c="$1" d="$2" out="$3" t0 t1
	t0="$(proc_ticks "${SHED_PID[$c]}")"
	"$BIN" bench -profile "$CONF/shed-profile.yaml" -rate "$SHED_OFFERED" -duration "$d" \
		-target "127.0.0.1:${TARGET[shed/$c]}" -quiet -json "$out" >/dev/null 2>"$WORK/bench-$c.err" ||
		{ tail -5 "$WORK/bench-$c.err" >&2; die "floodgate bench against $c failed"; }
	t1="$(proc_ticks "${SHED_PID[$c]}")"
	echo "$t0 $t1" | awk '{ print $3 - $1, $4 - $2 }'
}

# shed_figures JSON "TICKS KTICKS" OTHER -> "admitted/s rejects/s cpu_cores rejects_per_cpu_s adm_p99_ms rej_p99_ms errors late_pct other us_per_answer kernel_us_per_answer"
# admitted/s and rejects/s over the steady seconds of the timeline (the first and the last
# second left out); rejects per CPU-second: every reject of the run over the proxy's CPU.
shed_figures() {
	local ticks="${2%% *}" kticks="${2##* }"
	jq -r --argjson ticks "$ticks" --argjson kticks "$kticks" --argjson hz "$(getconf CLK_TCK)" --argjson other "$3" '
		.timeline as $t | ($t | length) as $n
		| (if $n > 2 then $t[1:$n - 1] else $t end) as $s
		| (if $n > 2 then $t[$n - 2].t - $t[0].t else .elapsed_s end) as $w
		| (($s | map(.done[0]) | add) / $w) as $adm
		| (($s | map(.done[1] + .done[4]) | add) / $w) as $rejs
		| ([.routes[].verdicts[] | select(.class == "shed" or .class == "other")]) as $rv
		| ($rv | map(.count) | add // 0) as $rej
		| (($rv | max_by(.count) // {latency_us: {p99: 0}}).latency_us.p99) as $rp99
		| ($ticks / $hz) as $cpu
		| ([.routes[].verdicts[].count] | add // 0) as $answers
		| "\($adm) \($rejs) \($cpu / .elapsed_s) \(if $cpu > 0 then $rej / $cpu else 0 end) \(.admitted_us.p99 / 1000) \($rp99 / 1000) \((.totals.error // 0) + (.totals.client // 0)) \(.late_pct) \($other) \(if $answers > 0 then 1e6 * $cpu / $answers else 0 end) \(if $answers > 0 then 1e6 * $kticks / $hz / $answers else 0 end)"
	' "$1"
}

if [ -n "$SHED_CONFIGS" ]; then
	if [ -n "${TARGET[unpinned/direct]:-}" ]; then
		SHED_BACKEND="${TARGET[unpinned/direct]}"
	else
		start_backend backend-shed -
		SHED_BACKEND=$BACKEND_PORT
	fi
	start_shed "$SHED_BACKEND"
	stotal=$(( $(echo $SHED_CONFIGS | wc -w) * RUNS ))
	log "$(date -u +%FT%TZ) shedding: floodgate bench $SHED_OFFERED/s (${SHED_FACTOR}x the limit $SHED_LIMIT/s, burst $SHED_BURST) for $SHED_DURATION, random users; $RUNS runs of $SHED_CONFIGS interleaved ($stotal runs)"
	n=0
	for run in $(seq "$RUNS"); do
		for c in $SHED_CONFIGS; do
			n=$((n + 1))
			shed_run "$c" "$WARMUP" "$WORK/warm.json" >/dev/null
			# other load: busy CPU minus this script's processes and floodgate bench (reaped
			# by this shell: its CPU shows in the shell's children's time, cutime+cstime)
			g0="$(children_ticks)" b0="$(busy_ticks)" o0="$(our_ticks)" t0="$(date +%s%N)"
			ticks="$(shed_run "$c" "$SHED_DURATION" "$WORK/$c-$run.json")"
			b1="$(busy_ticks)" o1="$(our_ticks)" t1="$(date +%s%N)" g1="$(children_ticks)"
			other="$(awk -v b="$((b1 - b0))" -v o="$((o1 - o0))" -v g="$((g1 - g0))" -v hz="$(getconf CLK_TCK)" -v ns="$((t1 - t0))" \
				'BEGIN { x = (b - o - g) / hz / (ns / 1e9); if (x < 0) x = 0; printf "%.2f", x }')"
			SR[$c/$run]="$(shed_figures "$WORK/$c-$run.json" "$ticks" "$other")"
			log "[$n/$stotal] run $run $(printf '%-14s' "$c") $(echo "${SR[$c/$run]}" | awk '{ printf "admitted/s=%.1f rejects/s=%.0f cpu=%.3f cores rejects/cpu-s=%.0f p99 admitted=%.2fms rejected=%.2fms errors=%d late=%.2f%% other=%s cores", $1, $2, $3, $4, $5, $6, $7, $8, $9 }')"
		done
	done
fi

# --- report ----------------------------------------------------------------------------
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print 0; exit } if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
declare -A RPS P50 P99 P999 MIN MAX ERR OTHER
for k in "${ACTIVE[@]}"; do
	vals=""
	for run in $(seq "$RUNS"); do vals+="${R[$k/$run]}"$'\n'; done
	RPS[$k]="$(printf '%s' "$vals" | awk '{ print $1 }' | median)"
	P50[$k]="$(printf '%s' "$vals" | awk '{ print $2 }' | median)"
	P99[$k]="$(printf '%s' "$vals" | awk '{ print $3 }' | median)"
	P999[$k]="$(printf '%s' "$vals" | awk '{ print $6 }' | median)"
	MIN[$k]="$(printf '%s' "$vals" | awk '{ print $1 }' | sort -g | head -1)"
	MAX[$k]="$(printf '%s' "$vals" | awk '{ print $1 }' | sort -g | tail -1)"
	ERR[$k]="$(printf '%s' "$vals" | awk '{ s += $4 } END { print s + 0 }')"
	OTHER[$k]="$(printf '%s' "$vals" | awk '{ print $5 }' | median)"
done

# value of a ratio name in a placement: haproxy = the faster of t1/t2, nginx = 1 worker
val() {
	local pl="$1" name="$2" a b
	case "$name" in
	nginx) echo "${RPS[$pl/nginx-1w]:-}" ;;
	haproxy)
		a="${RPS[$pl/haproxy-t1]:-0}" b="${RPS[$pl/haproxy-t2]:-0}"
		awk -v a="$a" -v b="$b" 'BEGIN { m = a > b ? a : b; if (m > 0) print m }'
		;;
	*) echo "${RPS[$pl/$name]:-}" ;;
	esac
}
ratio_lines() { # ratio_lines PLACEMENT PREFIX
	local pl="$1" prefix="$2" pair a b va vb
	for pair in gateway/nginx gateway/haproxy gateway/gateway-nopipe gateway-nopipe/nginx gateway/direct nginx/direct haproxy/direct gateway-filters/gateway gateway-filters/nginx gateway-filters/haproxy gateway-adaptive/gateway-filters; do
		a="${pair%/*}" b="${pair#*/}"
		va="$(val "$pl" "$a")" vb="$(val "$pl" "$b")"
		[ -n "$va" ] && [ -n "$vb" ] || continue
		awk -v p="$prefix" -v n="$pair" -v a="$va" -v b="$vb" 'BEGIN { if (b > 0) printf "%sratio %s = %.2f\n", p, n, a / b }'
	done
	# latency (lower is better): the gateway's p99 and p99.9 over nginx's (1 worker)
	for pair in gateway/nginx-1w; do
		a="${pair%/*}" b="${pair#*/}"
		[ -n "${P99[$pl/$a]:-}" ] && [ -n "${P99[$pl/$b]:-}" ] || continue
		awk -v p="$prefix" -v a="${P99[$pl/$a]}" -v b="${P99[$pl/$b]}" -v c="${P999[$pl/$a]}" -v d="${P999[$pl/$b]}" \
			'BEGIN { if (b > 0) printf "%sratio p99 gateway/nginx = %.2f\n", p, a / b; if (d > 0) printf "%sratio p99.9 gateway/nginx = %.2f\n", p, c / d }'
	done
}

TABLE=""
if [ "${#ACTIVE[@]}" -gt 0 ]; then
TABLE="$(
	printf '| placement | configuration | req/s (median) | min - max | p50 ms | p99 ms | p99.9 ms | non-2xx/errors | other load (cores) |\n'
	printf '|---|---|---:|---:|---:|---:|---:|---:|---:|\n'
	for k in "${ACTIVE[@]}"; do
		printf '| %s | %s | %.0f | %.0f - %.0f | %.2f | %.2f | %.2f | %s | %.2f |\n' "${k%%/*}" "${k#*/}" \
			"${RPS[$k]}" "${MIN[$k]}" "${MAX[$k]}" "${P50[$k]}" "${P99[$k]}" "${P999[$k]}" "${ERR[$k]}" "${OTHER[$k]}"
	done
)"
fi
NOTES=""
for c in "${!SKIPNOTE[@]}"; do NOTES+="note: $c: ${SKIPNOTE[$c]}"$'\n'; done
OTHER_ALL="$(for k in "${ACTIVE[@]}"; do echo "${OTHER[$k]}"; done | median)"
if awk -v o="$OTHER_ALL" 'BEGIN { exit !(o > 0.2) }'; then
	NOTES+="note: the machine was busy with other work during the runs (median $OTHER_ALL cores besides this benchmark); the figures are noisy - rerun on a quiet machine"$'\n'
fi
PINNED_RATIOS=""
[[ " $PLACEMENTS " == *" pinned "* ]] && PINNED_RATIOS="$(ratio_lines pinned 'pinned: ')"
RATIOS=""
[[ " $PLACEMENTS " == *" unpinned "* ]] && RATIOS="$(ratio_lines unpinned '')"

# shedding: medians over the runs of each column (shed_figures' order)
SHED_TABLE="" SHED_RATIOS="" SHED_NOTES=""
if [ -n "$SHED_CONFIGS" ]; then
	declare -A SM
	for c in $SHED_CONFIGS; do
		for col in 1 2 3 4 5 6 7 8 9 10 11; do
			SM[$c/$col]="$(for run in $(seq "$RUNS"); do echo "${SR[$c/$run]}"; done | awk -v k="$col" '{ print $k }' | median)"
		done
		SM[$c/min]="$(for run in $(seq "$RUNS"); do echo "${SR[$c/$run]}"; done | awk '{ print $4 }' | sort -g | head -1)"
		SM[$c/max]="$(for run in $(seq "$RUNS"); do echo "${SR[$c/$run]}"; done | awk '{ print $4 }' | sort -g | tail -1)"
		SM[$c/admmin]="$(for run in $(seq "$RUNS"); do echo "${SR[$c/$run]}"; done | awk '{ print $1 }' | sort -g | head -1)"
		SM[$c/admmax]="$(for run in $(seq "$RUNS"); do echo "${SR[$c/$run]}"; done | awk '{ print $1 }' | sort -g | tail -1)"
	done
	SHED_TABLE="$(
		printf '| configuration | admitted/s (median; min - max) | vs limit | rejects/s | proxy CPU (cores) | rejects per CPU-second (median; min - max) | CPU us per answer (of it kernel) | p99 admitted ms | p99 rejected ms | errors | generator late | other load (cores) |\n'
		printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
		for c in $SHED_CONFIGS; do
			printf '| %s | %.1f (%.1f - %.1f) | %+.2f%% | %.0f | %.3f | %.0f (%.0f - %.0f) | %.1f (%.1f) | %.2f | %.2f | %.0f | %.2f%% | %.2f |\n' "$c" \
				"${SM[$c/1]}" "${SM[$c/admmin]}" "${SM[$c/admmax]}" "$(awk -v a="${SM[$c/1]}" -v l="$SHED_LIMIT" 'BEGIN { print 100 * (a - l) / l }')" \
				"${SM[$c/2]}" "${SM[$c/3]}" "${SM[$c/4]}" "${SM[$c/min]}" "${SM[$c/max]}" "${SM[$c/10]}" "${SM[$c/11]}" "${SM[$c/5]}" "${SM[$c/6]}" "${SM[$c/7]}" "${SM[$c/8]}" "${SM[$c/9]}"
		done
	)"
	for c in $SHED_CONFIGS; do
		for run in $(seq "$RUNS"); do
			echo "${SR[$c/$run]}" | awk -v c="$c" -v r="$run" -v l="$SHED_LIMIT" '{ d = ($1 - l) / l; if (d > 0.01 || d < -0.01) printf "note: %s run %d admitted %.1f/s: outside the limit %d/s +-1%%\n", c, r, $1, l }'
		done
	done >"$WORK/shed-notes"
	SHED_NOTES="$(cat "$WORK/shed-notes")"
	SHED_OTHER="$(for c in $SHED_CONFIGS; do echo "${SM[$c/9]}"; done | median)"
	if awk -v o="$SHED_OTHER" 'BEGIN { exit !(o > 0.2) }'; then
		SHED_NOTES+="${SHED_NOTES:+$'\n'}note: the machine was busy with other work during the shedding runs (median $SHED_OTHER cores besides this benchmark); the figures are noisy"
	fi
	# What the kernel alone allows: a proxy whose answers cost nothing in user space and the
	# same kernel CPU as the other proxy's (the socket reads, writes and waits of one
	# keep-alive answer) reaches at most (its CPU per answer / its kernel CPU per answer)
	# times the other's rejects per CPU-second.
	for b in shed-nginx shed-haproxy; do
		[[ " $SHED_CONFIGS " == *" $b "* ]] || continue
		SHED_NOTES+="${SHED_NOTES:+$'\n'}$(awk -v n="$b" -v t="${SM[$b/10]}" -v k="${SM[$b/11]}" 'BEGIN { if (k > 0) printf "note: %s spends %.1f us of CPU per answer, %.1f us of it in the kernel: a proxy with no user-space cost and %s'"'"'s kernel cost would answer at most %.2fx its rejects per CPU-second", n, t, k, n, t / k }')"
	done
	for b in shed-nginx shed-haproxy; do
		for a in shed-gateway shed-floor; do
			[[ " $SHED_CONFIGS " == *" $a "* && " $SHED_CONFIGS " == *" $b "* ]] || continue
			SHED_RATIOS+="$(awk -v n="$a/$b" -v a="${SM[$a/4]}" -v b="${SM[$b/4]}" 'BEGIN { if (b > 0) printf "ratio %s = %.2f", n, a / b }')"$'\n'
		done
	done
	SHED_RATIOS="${SHED_RATIOS%$'\n'}"
fi

CMD="make bench  (bench/compare.sh: wrk -t$THREADS -c$CONNS -d$DURATION --latency, warm-up $WARMUP, $RUNS runs interleaved)"
SHED_CMD="make bench  (bench/compare.sh, shedding: floodgate bench -profile bench/configs/shed-profile.yaml -rate $SHED_OFFERED -duration $SHED_DURATION, limit $SHED_LIMIT/s burst $SHED_BURST, warm-up $WARMUP, $RUNS runs interleaved)"
MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
if [ -n "$TABLE" ]; then
	echo
	echo "$(date -u '+%F %H:%M UTC') - $NCPU CPUs (${MODEL:-unknown CPU}) - $CMD"
	echo "pinned: proxy (or, for direct, the backend) on CPU $PROXY_CPU; wrk and the origin backend on CPU $LOAD_CPUS"
	echo
	echo "$TABLE"
	echo
	[ -n "$NOTES" ] && printf '%s\n' "$NOTES"
fi
if [ -n "$SHED_TABLE" ]; then
	echo
	echo "$(date -u '+%F %H:%M UTC') - $NCPU CPUs - $SHED_CMD"
	echo
	echo "$SHED_TABLE"
	echo
	[ -n "$SHED_NOTES" ] && printf '%s\n' "$SHED_NOTES"
fi
[ -n "$PINNED_RATIOS" ] && printf '%s\n' "$PINNED_RATIOS"
[ -n "$RATIOS" ] && printf '%s\n' "$RATIOS"
[ -n "$SHED_RATIOS" ] && printf '%s\n' "$SHED_RATIOS"

# --- bench/RESULTS.md: replace the block between the markers (hand-written notes stay) --
# write_block BEGIN_MARK END_MARK HEADING FILE: replace the block between the markers in
# $RESULTS with FILE, or append it under HEADING when the markers are missing.
write_block() {
	local b="$1" e="$2" heading="$3" f="$4"
	if [ -f "$RESULTS" ] && grep -qF "$b" "$RESULTS" && grep -qF "$e" "$RESULTS"; then
		awk -v b="$b" -v e="$e" -v f="$f" '
			$0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
			$0 == e { skip = 0; next }
			!skip { print }' "$RESULTS" >"$WORK/results.new" && cat "$WORK/results.new" >"$RESULTS"
	else
		{
			[ -f "$RESULTS" ] && echo
			echo "$heading"
			echo
			cat "$f"
		} >>"$RESULTS"
	fi
}
if [ -n "$RESULTS" ] && [ -n "$TABLE" ]; then
	BEGIN_MARK='<!-- compare.sh:begin (generated by make bench; edit outside the markers) -->'
	END_MARK='<!-- compare.sh:end -->'
	block="$WORK/block.md"
	{
		echo "$BEGIN_MARK"
		echo "Latest run: $(date -u '+%F %H:%M UTC'), $NCPU CPUs (${MODEL:-unknown CPU}), \`$CMD\`."
		echo "Pinned: the proxy (for direct: the backend) on CPU $PROXY_CPU, wrk and the origin backend on CPU $LOAD_CPUS."
		echo
		echo "$TABLE"
		echo
		echo '```'
		[ -n "$NOTES" ] && printf '%s\n' "$NOTES"
		[ -n "$PINNED_RATIOS" ] && printf '%s\n' "$PINNED_RATIOS"
		[ -n "$RATIOS" ] && printf '%s\n' "$RATIOS"
		echo '```'
		echo "$END_MARK"
	} >"$block"
	write_block "$BEGIN_MARK" "$END_MARK" "## Gateway vs nginx/haproxy (make bench)" "$block"
	log "figures written to ${RESULTS#$ROOT/}"
fi
if [ -n "$RESULTS" ] && [ -n "$SHED_TABLE" ]; then
	BEGIN_MARK='<!-- compare.sh:shed:begin (generated by make bench; edit outside the markers) -->'
	END_MARK='<!-- compare.sh:shed:end -->'
	block="$WORK/shed-block.md"
	{
		echo "$BEGIN_MARK"
		echo "Latest run: $(date -u '+%F %H:%M UTC'), $NCPU CPUs (${MODEL:-unknown CPU}), \`$SHED_CMD\`."
		echo
		echo "$SHED_TABLE"
		echo
		echo '```'
		[ -n "$SHED_NOTES" ] && printf '%s\n' "$SHED_NOTES"
		printf '%s\n' "$SHED_RATIOS"
		echo '```'
		echo "$END_MARK"
	} >"$block"
	write_block "$BEGIN_MARK" "$END_MARK" "## Shedding a flood: gateway vs nginx/haproxy (make bench)" "$block"
	log "shedding figures written to ${RESULTS#$ROOT/}"
fi
