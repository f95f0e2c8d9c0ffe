#!/usr/bin/env bash
# Measures the ring's setup flags (RINGXFER_RING_FLAGS, a diagnostic) with the release binary:
# each line is one `ringxfer bench --json --repeat R` run (uring and blocking alternating;
# small sizes batched to runs of >= 0.25 s)
# and prints the medians [min-max] in GB/s, the ratio of the medians, and the uring ends'
# median CPU seconds (user + system) per 10^9 bytes.
#   scripts/ring_flags.sh [REPEAT] [SIZES...]     defaults: 5 repeats, 400MB 1MiB 64KiB
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-5}; shift || true
SIZES=("$@"); [ ${#SIZES[@]} -gt 0 ] || SIZES=(400MB 1MiB 64KiB)
cargo build --release --quiet
bin=target/release/ringxfer
for size in "${SIZES[@]}"; do
  for flags in none coop single defer defer,fd; do
    RINGXFER_RING_FLAGS=$flags "$bin" bench --size "$size" --repeat "$R" --json |
      python3 -c '
import json, sys
d = json.load(sys.stdin); s = {x["backend"]: x for x in d["summary"]}
u, b = s["uring"], s["blocking"]
f = d["host"]["probe"]["ring_flags"]
c = u["cpu_s_per_gb"]
print("%-7s %-9s uring %5.2f [%5.2f-%5.2f]  blocking %5.2f [%5.2f-%5.2f]  ratio %.3f  "
      "uring CPU s/GB send %.3f recv %.3f" % (
    sys.argv[1], sys.argv[2], u["median_gbytes_per_s"], u["min_gbytes_per_s"],
    u["max_gbytes_per_s"], b["median_gbytes_per_s"], b["min_gbytes_per_s"],
    b["max_gbytes_per_s"], d["ratio_uring_over_blocking"], c["sender"], c["receiver"]))
assert f["forced"] and f["setup"] == sys.argv[2].split(",")[0], f' "$size" "$flags"
  done
done
