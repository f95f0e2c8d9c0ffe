#!/usr/bin/env bash
# Measures the uring backend's choices side by side with the blocking baseline, on loopback
# TCP, with the release binary: send opcode, receive opcode (pre-registered array), segment
# size and chain length. Each line is one `ringxfer bench --json` run (both backends
# alternating, R repeats) and prints medians and the ratio uring/blocking.
#   scripts/tune.sh [REPEAT] [COUNT]      defaults: 5 repeats, 50,000,000 f8 (400 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-5}; N=${2:-50000000}
cargo build --release --quiet
bin=target/release/ringxfer
run() {
  "$bin" bench --repeat "$R" --count "$N" --json "$@" | python3 -c '
import json, sys
d = json.load(sys.stdin); s = {x["backend"]: x for x in d["summary"]}
u, b = s["uring"], s["blocking"]
print("%-58s uring %5.2f [%5.2f-%5.2f]  blocking %5.2f [%5.2f-%5.2f]  ratio %.3f" % (
    " ".join(sys.argv[1:]) or "(defaults)", u["median_gbytes_per_s"], u["min_gbytes_per_s"],
    u["max_gbytes_per_s"], b["median_gbytes_per_s"], b["min_gbytes_per_s"],
    b["max_gbytes_per_s"], d["ratio_uring_over_blocking"]))' "$@"
}
echo "# opcodes, one-shot (registration, where an op needs it, is inside the timed call)"
run
run --send-op write-fixed
run --send-op send-zc
run --recv-op read-fixed
echo "# opcodes, pre-registered array (registration outside the timed call)"
run --registered
run --registered --send-op write-fixed
run --registered --send-op send-zc
run --registered --recv-op read-fixed
echo "# segment size (chain 8)"
for s in 1MiB 2MiB 4MiB 8MiB 16MiB 64MiB; do run --segment "$s"; done
echo "# chain length (segment 4 MiB)"
for c in 1 2 4 8 16 32; do run --chain "$c"; done
