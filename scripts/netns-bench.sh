#!/usr/bin/env bash
# Line-rate test on a real network path: two network namespaces joined by a veth pair,
# optionally shaped with tbf, `ringxfer recv`/`serve` in one and `ringxfer send` in the other.
#
#   scripts/netns-bench.sh [--rate LIST] [--size BYTES] [--backend uring|blocking|both]
#                          [--repeat R] [--mode raw|framed] [--quick] [--iperf3] [--check]
#                          [--burst BYTES] [--latency TIME] [--mtu N] [--bin PATH]
#   scripts/netns-bench.sh --rails [--rate LIST] [--size BYTES] [--backend ...] [--repeat R]
#                          [--streams LIST] [--no-mptcp] [--quick]
#
#   --rate     comma-separated tc rates, `none` = unshaped veth   [none,2gbit,8gbit]
#              (units: bit, kbit, mbit, gbit; tc's "mbps" means megabytes and is refused)
#   --size     bytes per transfer, a multiple of 8 (f8 arange): 400MB, 64MiB    [400MB]
#   --backend  the ringxfer backend on both ends                                [both]
#   --repeat   transfers per (rate, backend); the table shows the median        [3]
#   --mode     raw (default) or framed, see "Raw or framed" below               [raw]
#   --quick    CI size: --size 64MB --repeat 1 (flags after it override). At 64 MB the
#              initial tbf burst inflates the 8gbit figure by up to 1.6%: quote 400MB runs
#   --iperf3   also run iperf3 (when installed) on the same path, as a reference
#   --check    exit 1 when a goal below is missed (by default goals are only reported)
#   --burst / --latency   tbf parameters, see "Shaping" below       [max(1 ms of rate, 256KiB) / 10ms]
#   --mtu      veth MTU                                                          [1500]
#   --bin      the ringxfer binary        [target/release/ringxfer, `cargo build --release` first]
#   --rails    rails mode (issue 9), raw only: a SECOND veth pair joins the namespaces
#              (10.202.0.1/24 receiver, 10.202.0.2/24 sender, inside them only), both pairs
#              tbf-shaped on the sender's egress to each --rate [2gbit,1gbit]; per rate: one
#              stream on rail 0 vs `--streams 1` over both rails (2 streams: `--listen
#              10.201.0.1:P,10.202.0.1:P`), goal rails/single >= 1.9; and MPTCP over the same
#              two rails (python3 with IPPROTO_MPTCP, two subflows; skipped when the kernel or
#              python3 lacks it, or with --no-mptcp). Then, unshaped, `--streams` LIST
#              [1,2,4,8] on one veth and on loopback (inside the receiver's namespace).
#
# Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`). When namespaces cannot be made
# it prints one "netns-bench: skipped: ..." line and exits 0, so CI can say it skipped.
#
# Isolation. The namespaces are named rxfer-rx-PID / rxfer-tx-PID and the veth ends are
# created directly inside them, so nothing appears in the caller's namespace: the addresses
# (10.201.0.1/24 receiver, 10.201.0.2/24 sender) exist only on that veth, there is no route
# out, and two runs at once do not collide. A `trap ... EXIT` kills what the script started and
# deletes both namespaces (which destroys the veth pair and its qdisc), on success, failure
# or Ctrl-C.
#
# Raw or framed. Raw (the default) runs `ringxfer recv --listen --raw` against
# `ringxfer send --connect --raw`: the receiver's clock runs from the accepted connection to
# the last byte in its pre-touched array, which is the transport alone. Framed runs
# `ringxfer serve --json` against a framed `ringxfer send`; serve's clock (first header byte
# to a checked array) also covers the CRC-32 pass over the payload after the last byte and
# receiving into a new array, so it is the figure a framed user gets but not the line rate.
# One serve runs per (rate, backend) and gets one uncounted warm-up array first, so the
# counted arrays land in recycled memory as on a long-running server (a new process's first
# 400 MB array page-faults all the way: about 9 Gbit/s here). In both modes the achieved rate is the *receiver's*: the sender's clock stops when
# the last byte is handed to its kernel, up to a socket buffer ahead of delivery.
#
# Shaping. `tc qdisc add dev <sender's veth> root tbf rate R burst B latency L` on the
# sender's egress. tbf refills tokens continuously and sleeps on an hrtimer, so the old
# "burst >= rate/HZ" rule (HZ=250 here: 1 MB at 2gbit, 4 MB at 8gbit) is not needed for the
# rate to be reached; what burst must hold is a whole GSO packet (veth sends up to 64 KiB
# per skb; a bigger skb than the bucket is re-segmented in software, which costs CPU) plus
# slack for timer latency. Default B = max(1 ms at the rate, 4 x 64 KiB): 256 KiB at 2gbit,
# 1 MB at 8gbit. A full bucket lets B bytes out at veth speed at the start, inflating a
# transfer of S bytes by at most B/S (0.25% for 1 MB in 400 MB). L=10ms bounds the queue
# (tbf's limit = R x L + B); TCP small queues keep a single flow far below it anyway.
# tbf counts whole frames (Ethernet + IP + TCP headers), so at MTU 1500 the payload can
# reach at most 1448/1514 = 0.956 of the configured rate (MSS 1448 with timestamps); the
# table prints that ceiling. netem is not available on these kernels; tbf is.
# Measured here (400 MB, uring, achieved/configured at 2gbit / 8gbit, median of 3 or 5 runs):
#   burst 70000 B (one GSO packet)   0.918 / 0.795   timer slack starves the link
#   burst 256 KiB                    0.955 / 0.950..0.953
#   burst 512 KiB                    0.957 / 0.957
#   burst 1 MB                       0.958 / 0.946..0.958 (single runs down to 0.854)
#   burst 4 MB (rate/HZ at 8gbit)    0.964 / 0.963   above the ceiling: the initial burst
#
# Goals (issue 4): uring >= 0.95 of the configured rate at 2gbit and 8gbit, and
# uring >= blocking on the unshaped veth.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES="none,2gbit,8gbit"
SIZE="400MB"
BACKEND="both"
REPEAT=3
MODE="raw"
IPERF=0
CHECK=0
BURST=""
LATENCY="10ms"
MTU=1500
BIN="target/release/ringxfer"
RAILS=0
RATES_GIVEN=0
STREAM_LIST="1,2,4,8"
MPTCP=1

die() { echo "netns-bench: $*" >&2; exit 2; }
need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rate) need_arg "$@"; RATES="$2"; RATES_GIVEN=1; shift 2 ;;
    --rails) RAILS=1; shift ;;
    --streams) need_arg "$@"; STREAM_LIST="$2"; shift 2 ;;
    --no-mptcp) MPTCP=0; shift ;;
    --size) need_arg "$@"; SIZE="$2"; shift 2 ;;
    --backend) need_arg "$@"; BACKEND="$2"; shift 2 ;;
    --repeat) need_arg "$@"; REPEAT="$2"; shift 2 ;;
    --mode) need_arg "$@"; MODE="$2"; shift 2 ;;
    --quick) SIZE="64MB"; REPEAT=1; shift ;;
    --iperf3) IPERF=1; shift ;;
    --check) CHECK=1; shift ;;
    --burst) need_arg "$@"; BURST="$2"; shift 2 ;;
    --latency) need_arg "$@"; LATENCY="$2"; shift 2 ;;
    --mtu) need_arg "$@"; MTU="$2"; shift 2 ;;
    --bin) need_arg "$@"; BIN="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
case "$BACKEND" in uring) BACKENDS="uring" ;; blocking) BACKENDS="blocking" ;;
  both) BACKENDS="uring blocking" ;; *) die "--backend must be uring, blocking or both" ;; esac
case "$MODE" in raw|framed) ;; *) die "--mode must be raw or framed" ;; esac
if [[ "$RAILS" == 1 ]]; then
  [[ "$MODE" == raw ]] || die "--rails is raw mode only (framed striping is not implemented yet)"
  [[ "$RATES_GIVEN" == 1 ]] || RATES="2gbit,1gbit"
fi
[[ "$STREAM_LIST" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--streams must be a list like 1,2,4,8"
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "--repeat must be a positive integer"
[[ "$MTU" =~ ^[0-9]+$ ]] || die "--mtu must be a number"

# "2gbit" -> bits per second (tc's units: bit, kbit, mbit, gbit; k = 1000).
rate_bps() {
  local r="${1,,}" n unit
  [[ "$r" =~ ^([0-9]+(\.[0-9]+)?)(bit|kbit|mbit|gbit|tbit)$ ]] ||
    die "rate $1: use a number with bit, kbit, mbit or gbit (e.g. 2gbit)"
  n="${BASH_REMATCH[1]}"; unit="${BASH_REMATCH[3]}"
  awk -v n="$n" -v u="$unit" 'BEGIN { m = (u=="bit")?1:(u=="kbit")?1e3:(u=="mbit")?1e6:(u=="gbit")?1e9:1e12; printf "%.0f", n*m }'
}
# "400MB" -> 400000000, "64MiB" -> 67108864 (as ringxfer parses --size).
size_bytes() {
  [[ "$1" =~ ^([0-9]+)(|B|KB|MB|GB|KiB|MiB|GiB)$ ]] || die "size $1: use e.g. 400MB, 64MiB, 4096"
  local n="${BASH_REMATCH[1]}"
  case "${BASH_REMATCH[2]}" in
    KB) echo $((n * 1000)) ;; MB) echo $((n * 1000000)) ;; GB) echo $((n * 1000000000)) ;;
    KiB) echo $((n << 10)) ;; MiB) echo $((n << 20)) ;; GiB) echo $((n << 30)) ;; *) echo "$n" ;;
  esac
}
(( $(size_bytes "$SIZE") % 8 == 0 )) || die "--size must be a multiple of 8 bytes (f8 elements)"
IFS=',' read -r -a RATE_LIST <<< "$RATES"
for r in "${RATE_LIST[@]}"; do [[ "$r" == none ]] || rate_bps "$r" >/dev/null; done

skip() { echo "netns-bench: skipped: $*"; exit 0; }
[[ $(id -u) -eq 0 ]] || skip "needs root for ip netns (running as uid $(id -u))"
command -v ip >/dev/null || skip "the ip command (iproute2) is not installed"

if [[ "$BIN" == target/release/ringxfer ]]; then
  cargo build --release --quiet || die "cargo build --release failed"
fi
[[ -x "$BIN" ]] || die "$BIN is not an executable"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

NS_RX="rxfer-rx-$$"
NS_TX="rxfer-tx-$$"
IF_RX="rxv$$r"   # interface names are at most 15 bytes
IF_TX="rxv$$t"
ADDR_RX="10.201.0.1"
ADDR_TX="10.201.0.2"
PORT=5201
TMP="$(mktemp -d)"
PIDS=()

# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  set +e  # every step must run, whatever the one before it returned
  for p in "${PIDS[@]:-}"; do
    [[ -n "$p" ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  for ns in "$NS_TX" "$NS_RX"; do
    # Anything still running inside our own namespaces was started by this script.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! err=$(ip netns add "$NS_RX" 2>&1); then
  skip "ip netns add failed: $err"
fi
ip netns add "$NS_TX" 2>/dev/null || skip "ip netns add $NS_TX failed"
if ! err=$(ip link add "$IF_RX" netns "$NS_RX" type veth peer name "$IF_TX" netns "$NS_TX" 2>&1); then
  skip "cannot create a veth pair: $err"
fi
# Background jobs call `ip netns exec` directly (it execs the command), never through a
# function, so that $! is the command itself and the cleanup's kill reaches it.
in_tx() { ip netns exec "$NS_TX" "$@"; }
for side in "$NS_RX $IF_RX $ADDR_RX" "$NS_TX $IF_TX $ADDR_TX"; do
  read -r ns ifc addr <<< "$side"
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$ifc" mtu "$MTU"
  ip -n "$ns" addr add "$addr/24" dev "$ifc"
  ip -n "$ns" link set "$ifc" up
done
in_tx ping -c 1 -W 2 "$ADDR_RX" >/dev/null 2>&1 || true  # ARP, so the first run does not pay it

# Shapes the sender's egress; "none" removes the qdisc. Returns 1 when tbf is refused.
shape() {
  local rate="$1" bps burst
  ip -n "$NS_TX" link set "$IF_TX" up
  tc -n "$NS_TX" qdisc del dev "$IF_TX" root 2>/dev/null || true
  [[ "$rate" == none ]] && return 0
  bps=$(rate_bps "$rate")
  if [[ -n "$BURST" ]]; then
    burst="$BURST"
  else
    burst=$(awk -v b="$bps" 'BEGIN { x = b/8/1000; if (x < 262144) x = 262144; printf "%.0f", x }')
  fi
  if ! err=$(tc -n "$NS_TX" qdisc add dev "$IF_TX" root tbf rate "$rate" burst "$burst" latency "$LATENCY" 2>&1); then
    echo "netns-bench: skipped rate $rate: tbf refused: $err"
    return 1
  fi
  SHAPE_DESC="tbf rate $rate burst $burst latency $LATENCY"
}

# Field NAME of a one-line JSON object (numbers and strings only).
json_field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<< "$2" | head -n 1; }

# Framed mode: one `ringxfer serve` per (rate, backend), so that later arrays land in memory
# recycled from earlier ones as they do on a long-running server; SERVE_SEEN counts its lines.
serve_start() {
  local backend="$1" i
  : > "$TMP/rx.out"
  ip netns exec "$NS_RX" "$BIN" serve --listen "$ADDR_RX:$PORT" --backend "$backend" --json \
    > "$TMP/rx.out" 2> "$TMP/rx.err" &
  SERVE_PID=$!; PIDS+=("$SERVE_PID"); SERVE_SEEN=0
  for ((i = 0; i < 200; i++)); do grep -q '^listening' "$TMP/rx.out" && return 0; sleep 0.05; done
  die "serve ($backend) did not start: $(cat "$TMP/rx.err")"
}
serve_stop() { kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; }

# One transfer: sets GOT_BYTES and GOT_SECS as the receiver measured them. Runs in the main
# shell (not a $(...) subshell) so that PIDS reaches the cleanup and `die` ends the script.
run_once() {
  local backend="$1" out="$TMP/rx.out" line pid txpid i
  if [[ "$MODE" == raw ]]; then
    : > "$out"
    ip netns exec "$NS_RX" "$BIN" recv --listen "$ADDR_RX:$PORT" --raw --size "$SIZE" --backend "$backend" --json \
      > "$out" 2> "$TMP/rx.err" &
    pid=$!; PIDS+=("$pid")
    # In the background too, so that a signal interrupts `wait` at once.
    ip netns exec "$NS_TX" "$BIN" send --connect "$ADDR_RX:$PORT" --raw --size "$SIZE" \
      --backend "$backend" --json > "$TMP/tx.out" 2> "$TMP/tx.err" &
    txpid=$!; PIDS+=("$txpid")
    if ! wait "$txpid"; then
      kill "$pid" 2>/dev/null || true
      die "send ($backend) failed: $(cat "$TMP/tx.err")"
    fi
    wait "$pid" || die "recv ($backend) failed: $(cat "$TMP/rx.err")"
    line=$(cat "$out")
    [[ "$(json_field verified "$line")" == true ]] || die "recv ($backend): data not verified: $line"
  else
    ip netns exec "$NS_TX" "$BIN" send --connect "$ADDR_RX:$PORT" --size "$SIZE" \
      --backend "$backend" --json > "$TMP/tx.out" 2> "$TMP/tx.err" &
    txpid=$!; PIDS+=("$txpid")
    wait "$txpid" || die "send ($backend) failed: $(cat "$TMP/tx.err")"
    # serve prints its line once the array is received and checked, after send returned.
    for ((i = 0; i < 600; i++)); do
      (( $(grep -c '^{' "$out") > SERVE_SEEN )) && break
      sleep 0.05
    done
    SERVE_SEEN=$((SERVE_SEEN + 1))
    line=$(grep '^{' "$out" | sed -n "${SERVE_SEEN}p")
    [[ -n "$line" ]] || die "serve ($backend) printed no line for array $SERVE_SEEN: $(cat "$TMP/rx.err")"
    [[ "$(json_field arange "$line")" == true ]] || die "serve ($backend): bad array: $line"
  fi
  GOT_BYTES=$(json_field bytes "$line")
  GOT_SECS=$(json_field seconds "$line")
}

CEILING=$(awk -v m="$MTU" 'BEGIN { printf "%.3f", (m - 52) / (m + 14) }')

# Median, min and max of numbers on stdin.
stats() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "%.3f %.3f %.3f\n", m, v[1], v[NR] }'; }

# Rails mode: one raw transfer between the namespaces (or on loopback inside the receiver's
# namespace when NS_SEND is NS_RX), receiver listening on LISTEN (comma-separated rails) and
# the sender connecting to the same; the receiver's Gbit/s is appended to $TMP/gbit.
xfer_once() {
  local backend="$1" listen="$2" ns_send="$3"; shift 3
  local pid txpid line
  : > "$TMP/rx.out"
  ip netns exec "$NS_RX" "$BIN" recv --listen "$listen" --raw --size "$SIZE" --backend "$backend" --json "$@" \
    > "$TMP/rx.out" 2> "$TMP/rx.err" &
  pid=$!; PIDS+=("$pid")
  ip netns exec "$ns_send" "$BIN" send --connect "$listen" --raw --size "$SIZE" \
    --backend "$backend" --json "$@" > "$TMP/tx.out" 2> "$TMP/tx.err" &
  txpid=$!; PIDS+=("$txpid")
  if ! wait "$txpid"; then
    kill "$pid" 2>/dev/null || true
    die "send ($backend $listen $*) failed: $(cat "$TMP/tx.err")"
  fi
  wait "$pid" || die "recv ($backend $listen $*) failed: $(cat "$TMP/rx.err")"
  line=$(cat "$TMP/rx.out")
  [[ "$(json_field verified "$line")" == true ]] || die "recv ($backend): data not verified: $line"
  awk -v b="$(json_field bytes "$line")" -v s="$(json_field seconds "$line")" \
    'BEGIN { printf "%.6f\n", b * 8 / s / 1e9 }' >> "$TMP/gbit"
}

# MPTCP over both rails: a python3 receiver (IPPROTO_MPTCP = 262) in NS_RX, a sender in NS_TX
# whose second subflow goes over rail 1 (`ip mptcp endpoint ... subflow`); the receiver's
# Gbit/s (first byte accepted to last byte received, recv_into a pre-touched bytearray) is
# appended to $TMP/gbit.
MPTCP_PY='
import socket, sys, time
role, addr, port, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
buf = bytearray(size); view = memoryview(buf)
if role == "rx":
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((addr, port)); l.listen(1); print("ready", flush=True)
    c, _ = l.accept(); t = time.perf_counter(); got = 0
    while got < size:
        n = c.recv_into(view[got:])
        if n == 0: sys.exit("eof after %d bytes" % got)
        got += n
    secs = time.perf_counter() - t
    c.close(); print("%.6f" % (size * 8 / secs / 1e9))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    s.connect((addr, port)); time.sleep(0.2)  # let the second subflow join
    s.sendall(view); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
'
mptcp_setup() {
  local ns
  for ns in "$NS_RX" "$NS_TX"; do
    ip netns exec "$ns" sysctl -qw net.mptcp.enabled=1 2>/dev/null || return 1
    ip -n "$ns" mptcp limits set subflow 2 add_addr_accepted 2 2>/dev/null || return 1
  done
  ip -n "$NS_TX" mptcp endpoint add "$ADDR_TX2" dev "$IF_TX2" subflow 2>/dev/null || return 1
  ip -n "$NS_RX" mptcp endpoint add "$ADDR_RX2" dev "$IF_RX2" signal 2>/dev/null || return 1
  ip netns exec "$NS_RX" python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262).close()' 2>/dev/null
}
mptcp_once() {
  local pid i
  : > "$TMP/mp.out"
  ip netns exec "$NS_RX" python3 -c "$MPTCP_PY" rx "$ADDR_RX" $((PORT + 2)) "$(size_bytes "$SIZE")" \
    > "$TMP/mp.out" 2> "$TMP/mp.err" &
  pid=$!; PIDS+=("$pid")
  for ((i = 0; i < 100; i++)); do grep -q ready "$TMP/mp.out" && break; sleep 0.05; done
  in_tx python3 -c "$MPTCP_PY" tx "$ADDR_RX" $((PORT + 2)) "$(size_bytes "$SIZE")" 2>> "$TMP/mp.err" ||
    die "mptcp sender failed: $(cat "$TMP/mp.err")"
  wait "$pid" || die "mptcp receiver failed: $(cat "$TMP/mp.err")"
  tail -n 1 "$TMP/mp.out" >> "$TMP/gbit"
}

if [[ "$RAILS" == 1 ]]; then
  IF_RX2="rxv$$R"; IF_TX2="rxv$$T"; ADDR_RX2="10.202.0.1"; ADDR_TX2="10.202.0.2"
  ip link add "$IF_RX2" netns "$NS_RX" type veth peer name "$IF_TX2" netns "$NS_TX" ||
    die "cannot create the second veth pair"
  for side in "$NS_RX $IF_RX2 $ADDR_RX2" "$NS_TX $IF_TX2 $ADDR_TX2"; do
    read -r ns ifc addr <<< "$side"
    ip -n "$ns" link set "$ifc" mtu "$MTU"
    ip -n "$ns" addr add "$addr/24" dev "$ifc"
    ip -n "$ns" link set "$ifc" up
  done
  in_tx ping -c 1 -W 2 "$ADDR_RX2" >/dev/null 2>&1 || true
  if [[ "$MPTCP" == 1 ]] && ! mptcp_setup; then
    echo "# MPTCP unavailable here (sysctl, ip mptcp or python3 IPPROTO_MPTCP refused): not measured"
    MPTCP=0
  fi
  echo "# netns-bench --rails: $SIZE per transfer, raw, $REPEAT repeat(s), veth MTU $MTU, two rails (10.201.0.0/24, 10.202.0.0/24)"
  echo "# kernel $(uname -r), $(nproc) CPUs, $("$BIN" --version 2>/dev/null || echo ringxfer); Gbit/s as the receiver measured it, median [min-max]"
  printf '%-9s %-9s %-28s %9s %-19s %s\n' backend rate path "Gbit/s" "[min-max]" "vs single"
  FAILED_GOALS=()
  L0="$ADDR_RX:$PORT"; L01="$ADDR_RX:$PORT,$ADDR_RX2:$((PORT + 1))"
  for rate in "${RATE_LIST[@]}"; do
    SHAPE_DESC="unshaped"
    shape "$rate" || continue
    desc0="$SHAPE_DESC"
    if [[ "$rate" != none ]]; then
      # The second rail gets the same shaping.
      tc -n "$NS_TX" qdisc del dev "$IF_TX2" root 2>/dev/null || true
      tc -n "$NS_TX" qdisc add dev "$IF_TX2" root tbf rate "$rate" \
        burst "$(awk -v b="$(rate_bps "$rate")" 'BEGIN { x = b/8/1000; if (x < 262144) x = 262144; printf "%.0f", x }')" \
        latency "$LATENCY" || die "tbf refused on rail 1"
    else
      tc -n "$NS_TX" qdisc del dev "$IF_TX2" root 2>/dev/null || true
    fi
    echo "# each rail: $desc0"
    for backend in $BACKENDS; do
      single=""
      for path in single rails; do
        rm -f "$TMP/gbit"
        for ((r = 0; r < REPEAT; r++)); do
          if [[ "$path" == single ]]; then xfer_once "$backend" "$L0" "$NS_TX"
          else xfer_once "$backend" "$L01" "$NS_TX" --streams 1; fi
        done
        read -r med lo hi < <(stats < "$TMP/gbit")
        if [[ "$path" == single ]]; then
          single="$med"; vs="1.000"; label="1 stream, rail 0"
        else
          vs=$(awk -v a="$med" -v s="$single" 'BEGIN { printf "%.3f", a / s }'); label="--streams 1 x 2 rails"
          awk -v x="$vs" 'BEGIN { exit !(x < 1.9) }' && FAILED_GOALS+=("$backend at $rate: rails/single $vs < 1.9")
        fi
        printf '%-9s %-9s %-28s %9s %-19s %s\n' "$backend" "$rate" "$label" "$med" "[$lo-$hi]" "$vs"
      done
    done
    if [[ "$MPTCP" == 1 ]]; then
      rm -f "$TMP/gbit"
      for ((r = 0; r < REPEAT; r++)); do mptcp_once; done
      read -r med lo hi < <(stats < "$TMP/gbit")
      printf '%-9s %-9s %-28s %9s %-19s %s\n' python3 "$rate" "MPTCP, 2 subflows" "$med" "[$lo-$hi]" \
        "$(awk -v a="$med" -v s="$single" 'BEGIN { printf "%.3f", a / s }')"
    fi
  done
  # Streams on one unshaped veth and on loopback.
  shape none
  tc -n "$NS_TX" qdisc del dev "$IF_TX2" root 2>/dev/null || true
  IFS=',' read -r -a SLIST <<< "$STREAM_LIST"
  for where in veth loopback; do
    echo "# unshaped $where: --streams N"
    for backend in $BACKENDS; do
      base=""
      for n in "${SLIST[@]}"; do
        rm -f "$TMP/gbit"
        for ((r = 0; r < REPEAT; r++)); do
          if [[ "$where" == veth ]]; then xfer_once "$backend" "$L0" "$NS_TX" --streams "$n"
          else xfer_once "$backend" "127.0.0.1:$((PORT + 3))" "$NS_RX" --streams "$n"; fi
        done
        read -r med lo hi < <(stats < "$TMP/gbit")
        [[ -n "$base" ]] || base="$med"
        printf '%-9s %-9s %-28s %9s %-19s %s\n' "$backend" none "$where --streams $n" "$med" "[$lo-$hi]" \
          "$(awk -v a="$med" -v s="$base" 'BEGIN { printf "%.3f", a / s }')"
      done
    done
  done
  if [[ ${#FAILED_GOALS[@]} -eq 0 ]]; then
    echo "# goal met: rails/single >= 1.9 at every shaped rate measured"
  else
    for g in "${FAILED_GOALS[@]}"; do echo "# goal missed: $g"; done
    [[ "$CHECK" == 1 ]] && exit 1
  fi
  exit 0
fi

echo "# netns-bench: $SIZE per transfer, $MODE mode, $REPEAT repeat(s), veth MTU $MTU (payload ceiling under tbf: $CEILING of the rate)"
echo "# kernel $(uname -r), $(nproc) CPUs, $("$BIN" --version 2>/dev/null || echo ringxfer)"
printf '%-9s %-9s %12s %-19s %11s %9s\n' backend rate "Gbit/s" "[min-max]" configured "achieved/configured"
declare -A MEDIAN
FAILED_GOALS=()
for rate in "${RATE_LIST[@]}"; do
  SHAPE_DESC="unshaped"
  shape "$rate" || continue
  echo "# $SHAPE_DESC"
  for backend in $BACKENDS; do
    rm -f "$TMP/gbit"
    if [[ "$MODE" == framed ]]; then
      serve_start "$backend"
      run_once "$backend"  # warm-up, not counted: fills serve's pool of recycled memory
    fi
    for ((r = 0; r < REPEAT; r++)); do
      run_once "$backend"
      awk -v b="$GOT_BYTES" -v s="$GOT_SECS" 'BEGIN { printf "%.6f\n", b * 8 / s / 1e9 }' >> "$TMP/gbit"
    done
    [[ "$MODE" == framed ]] && serve_stop
    read -r med lo hi < <(stats < "$TMP/gbit")
    MEDIAN["$rate/$backend"]="$med"
    if [[ "$rate" == none ]]; then
      printf '%-9s %-9s %12s %-19s %11s %9s\n' "$backend" none "$med" "[$lo-$hi]" "-" "-"
    else
      cfg=$(awk -v b="$(rate_bps "$rate")" 'BEGIN { printf "%.3f", b / 1e9 }')
      ratio=$(awk -v a="$med" -v c="$cfg" 'BEGIN { printf "%.3f", a / c }')
      printf '%-9s %-9s %12s %-19s %11s %9s\n' "$backend" "$rate" "$med" "[$lo-$hi]" "$cfg" "$ratio"
      if [[ "$backend" == uring ]] && awk -v x="$ratio" 'BEGIN { exit !(x < 0.95) }'; then
        FAILED_GOALS+=("uring at $rate: $ratio < 0.95")
      fi
    fi
  done
  if [[ "$rate" == none && -n "${MEDIAN[none/uring]:-}" && -n "${MEDIAN[none/blocking]:-}" ]]; then
    ratio=$(awk -v u="${MEDIAN[none/uring]}" -v b="${MEDIAN[none/blocking]}" 'BEGIN { printf "%.3f", u / b }')
    echo "# unshaped: uring/blocking = $ratio"
    awk -v x="$ratio" 'BEGIN { exit !(x < 1) }' && FAILED_GOALS+=("unshaped uring/blocking $ratio < 1")
  fi
  if [[ "$IPERF" == 1 ]]; then
    if command -v iperf3 >/dev/null; then
      ip netns exec "$NS_RX" iperf3 -s -1 -B "$ADDR_RX" -p $((PORT + 1)) >/dev/null 2>&1 &
      pid=$!; PIDS+=("$pid")
      sleep 0.3
      got=$(in_tx iperf3 -c "$ADDR_RX" -p $((PORT + 1)) -n "$(size_bytes "$SIZE")" -J 2>/dev/null |
        python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))' 2>/dev/null || echo "?")
      wait "$pid" 2>/dev/null || true
      if [[ "$rate" == none || "$got" == "?" ]]; then
        printf '%-9s %-9s %12s %-19s %11s %9s\n' iperf3 "$rate" "$got" "" "-" "-"
      else
        cfg=$(awk -v b="$(rate_bps "$rate")" 'BEGIN { printf "%.3f", b / 1e9 }')
        printf '%-9s %-9s %12s %-19s %11s %9s\n' iperf3 "$rate" "$got" "" "$cfg" \
          "$(awk -v a="$got" -v c="$cfg" 'BEGIN { printf "%.3f", a / c }')"
      fi
    else
      echo "# iperf3 not installed (apt-get install -y iperf3): no reference"
    fi
  fi
done

if [[ ${#FAILED_GOALS[@]} -eq 0 ]]; then
  echo "# goals met (uring >= 0.95 of each configured rate; uring >= blocking unshaped), where measured"
else
  for g in "${FAILED_GOALS[@]}"; do echo "# goal missed: $g"; done
  [[ "$CHECK" == 1 ]] && exit 1
fi
exit 0
