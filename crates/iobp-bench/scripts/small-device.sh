#!/usr/bin/env bash
# The small-device (Raspberry Pi class) figure: the benchmark against an instance confined to
# ONE core (taskset) and 256 MB of memory (a cgroup: v2 where the machine has its memory
# controller, else v1), while the load generator and receivers run outside the confinement
# (as the devices and the network would). Prints the benchmark's own report: throughput,
# latency at 10,000 and 1,000 msg/s (p50, p99, p99.9, max), and 10,000 msg/s spread over 10
# active pairs with the instance's memory.
#
# Usage (as root, for the cgroup): crates/iobp-bench/scripts/small-device.sh [BINARY] [BENCH]
# defaults: target/release/iobufferpro and target/release/iobp-bench
set -euo pipefail
cd "$(dirname "$0")/../../.."
bin=$(realpath "${1:-target/release/iobufferpro}")
bench=$(realpath "${2:-target/release/iobp-bench}")
limit=$((256 * 1024 * 1024))
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${cg:-}" ] && rmdir "$cg" 2>/dev/null || true' EXIT

if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  cg=/sys/fs/cgroup/iobp-small-$$
  mkdir "$cg"
  echo "$limit" > "$cg/memory.max"
  echo 0 > "$cg/memory.swap.max" 2>/dev/null || true
  kind="cgroup v2 memory.max"
elif [ -d /sys/fs/cgroup/memory ]; then
  cg=/sys/fs/cgroup/memory/iobp-small-$$
  mkdir "$cg"
  echo "$limit" > "$cg/memory.limit_in_bytes"
  kind="cgroup v1 memory.limit_in_bytes"
else
  echo "no memory cgroup here: run as root on a machine with cgroup v1 or v2" >&2
  exit 1
fi

# What the benchmark starts: the instance, joined to the cgroup and pinned to core 0.
cat > "$work/iobufferpro" <<WRAP
#!/bin/sh
echo \$\$ > "$cg/cgroup.procs"
exec taskset -c 0 "$bin" "\$@"
WRAP
chmod +x "$work/iobufferpro"
echo "small device: instance on 1 core (taskset -c 0), $((limit / 1024 / 1024)) MB ($kind)"
"$bench" --binary "$work/iobufferpro" --pairs 10 --backlog 200000 \
  --no-tls --no-relay --no-crash --no-udp --skip-idle --skip-mqtt --skip-jetstream --skip-astm \
  --no-socat --serial-messages 0
for f in memory.peak memory.max_usage_in_bytes; do
  [ -f "$cg/$f" ] && echo "cgroup $f: $(( $(cat "$cg/$f") / 1024 / 1024 )) MB"
done
