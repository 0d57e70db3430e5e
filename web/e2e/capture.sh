#!/usr/bin/env bash
# Captures the UI tests' traffic: two real HTTP servers on free loopback ports
# (tap-cli/tests/peers/http_server.py), e2e/traffic.py as their client, and
# tcpdump on lo catching only those two ports.
# Usage: capture.sh OUT_DIR   (needs root, tcpdump and python3)
# Writes OUT_DIR/capture.pcap and OUT_DIR/expected.json.
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
server="$here/../../tap-cli/tests/peers/http_server.py"
mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_a=$(free_port)
port_b=$(free_port)
while [ "$port_b" = "$port_a" ]; do port_b=$(free_port); done

python3 "$server" "$port_a" >"$out/server-a.log" 2>&1 & pids+=($!)
python3 "$server" "$port_b" >"$out/server-b.log" 2>&1 & pids+=($!)
rm -f "$out/capture.pcap"
tcpdump -i lo --immediate-mode -U -s 0 -B 131072 -w "$out/capture.pcap" "tcp port $port_a or tcp port $port_b" 2>"$out/tcpdump.log" &
cap=$!
pids+=($cap)
for _ in $(seq 100); do
  if grep -q "listening on" "$out/tcpdump.log" 2>/dev/null &&
     grep -q ready "$out/server-a.log" && grep -q ready "$out/server-b.log"; then
    break
  fi
  sleep 0.1
done
grep -q "listening on" "$out/tcpdump.log" || { echo "capture.sh: tcpdump did not start:" >&2; cat "$out/tcpdump.log" >&2; exit 1; }
sleep 0.3

python3 "$here/traffic.py" "$port_a" "$port_b" "$out/expected.json"

# tcpdump drops what it has not read yet when it is stopped: let it catch up.
sleep 1
kill -INT "$cap"
wait "$cap" 2>/dev/null || true
captured=$(sed -n 's/^\([0-9]*\) packets captured$/\1/p' "$out/tcpdump.log")
received=$(sed -n 's/^\([0-9]*\) packets received by filter$/\1/p' "$out/tcpdump.log")
dropped=$(sed -n 's/^\([0-9]*\) packets dropped by kernel$/\1/p' "$out/tcpdump.log")
echo "capture.sh: $captured packets captured, $received received by filter, $dropped dropped" >&2
# On lo the kernel counts each packet twice (sent and received), so only drops tell.
if [ "${dropped:-1}" != 0 ]; then
  echo "capture.sh: the capture is incomplete (see $out/tcpdump.log)" >&2
  exit 1
fi
