#!/usr/bin/env bash
# Throughput vs array size, both backends: one `ringxfer bench --json --backend both` run per
# size (loopback TCP, two threads, a fresh connection per run, pre-touched receive buffer, every
# run CRC-checked), summarised as CSV for scripts/plot.py.
#
#   scripts/sweep.sh [--repeat R] [--sizes "4KiB 64KiB ..."] [--out FILE.csv] [--bin PATH]
#
#   --repeat  runs per backend and size (the CSV has their median, min and max)  [21]
#   --sizes   sizes as `ringxfer bench --size` takes them, multiples of 8 bytes
#             [4KiB 64KiB 1MiB 16MiB 64MiB 400MB]
#   --out     the CSV                                             [docs/throughput.csv]
#   --bin     the ringxfer binary                     [target/release/ringxfer, built]
#
# CSV columns: size_bytes, backend, median_gbytes_per_s, min_gbytes_per_s,
# max_gbytes_per_s, runs. GB/s are 10^9 bytes per second, as `ringxfer bench` prints them.
# Each size's `ringxfer bench --json` object is also kept, one per line, in FILE.jsonl next
# to FILE.csv (kernel, CPUs and io_uring probe in its `host` block, and every run), so a point
# of the plot can be traced back to its runs.
#
# Then: python3 scripts/plot.py docs/throughput.csv --out docs/throughput.png
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT=21
SIZES="4KiB 64KiB 1MiB 16MiB 64MiB 400MB"
OUT="docs/throughput.csv"
BIN=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repeat) REPEAT="$2"; shift 2 ;;
    --sizes) SIZES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "sweep: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$BIN" ]]; then
  cargo build --release --quiet
  BIN=target/release/ringxfer
fi

mkdir -p "$(dirname "$OUT")"
JSONL="${OUT%.csv}.jsonl"
csv="$(mktemp)"
jsonl="$(mktemp)"
trap 'rm -f "$csv" "$jsonl"' EXIT
echo "size_bytes,backend,median_gbytes_per_s,min_gbytes_per_s,max_gbytes_per_s,runs" > "$csv"
for s in $SIZES; do
  echo "sweep: $s, $REPEAT runs per backend" >&2
  "$BIN" bench --json --backend both --size "$s" --repeat "$REPEAT" |
    python3 -c '
import json, sys
d = json.load(sys.stdin)
if not all(r.get("verified", True) for r in d["runs"]):
    sys.exit("sweep: a run was not verified")
with open(sys.argv[1], "a") as j:
    j.write(json.dumps(d) + "\n")
for x in d["summary"]:
    print("%d,%s,%.4f,%.4f,%.4f,%d" % (d["bytes"], x["backend"], x["median_gbytes_per_s"],
          x["min_gbytes_per_s"], x["max_gbytes_per_s"], x["runs"]))
' "$jsonl" >> "$csv"
done
mv "$csv" "$OUT"
mv "$jsonl" "$JSONL"
chmod 644 "$OUT" "$JSONL"  # mktemp makes 0600 files
trap - EXIT
cat "$OUT"
