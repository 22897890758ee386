#!/usr/bin/env bash
# The "idle instance with 50 polled devices" figure of issue 15: one release instance with 50
# modbus pairs (each a device polled every second: 4 holding registers and 16 coils) delivering
# to a TCP sink; after a warm-up, the instance's CPU over a minute and its resident memory.
# Devices: one `iobufferpro simulate modbus` serving every connection.
# Usage: crates/iobp-bench/scripts/modbus-idle.sh [BINARY] [PAIRS] [SECONDS]
set -euo pipefail
bin=${1:-target/release/iobufferpro}
pairs=${2:-50}
secs=${3:-60}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dev=$(port); sink=$(port); ops=$(port); mgmt=$(port)
"$bin" simulate modbus --listen "127.0.0.1:$dev" > /dev/null &
python3 - "$sink" <<'PY' &
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(128)
def drain(c):
    while c.recv(65536): pass
while True:
    c, _ = s.accept(); threading.Thread(target=drain, args=(c,), daemon=True).start()
PY
python3 - "$pairs" "$dev" "$sink" > "$work/config.json" <<'PY'
import json, sys
n, dev, sink = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pairs = [{"id": f"plc-{i}", "source": {"type": "modbus",
          "transport": {"type": "tcp", "host": "127.0.0.1", "port": dev},
          "polls": [{"name": "tank", "unit": 1 + i % 200, "function": "holding_registers",
                     "address": 0, "count": 4, "interval_ms": 1000},
                    {"name": "valves", "unit": 1 + i % 200, "function": "coils",
                     "address": 0, "count": 16, "interval_ms": 1000}]},
          "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": sink,
                          "framing": {"type": "line"}}} for i in range(n)]
print(json.dumps({"channel_pairs": pairs}))
PY
IOBP_LOG=error "$bin" run --config "$work/config.json" --data-dir "$work/data" \
  --ops-listen "127.0.0.1:$ops" --mgmt-listen "127.0.0.1:$mgmt" > /dev/null &
inst=$!
sleep 15
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$inst/stat"; }
c0=$(cpu); sleep "$secs"; c1=$(cpu)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$inst/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$inst/status")
received=$(curl -s "http://127.0.0.1:$ops/metrics" | awk '/^iobp_messages_received_total/ {s += $2} END {print s}')
python3 -c "
c = ($c1 - $c0) / $ticks / $secs * 100
print(f'$pairs polled devices (2 polls/s each): instance CPU {c:.1f} % of one core over $secs s, RSS {$rss/1024:.1f} MB (peak {$hwm/1024:.1f} MB), {int($received)} readings stored')
"
