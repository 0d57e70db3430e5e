#!/usr/bin/env bash
# Makes real HTTP/1.1 traffic on loopback between a real server (http_server.py)
# and real clients (curl, a pipelining Python client), and captures it with
# dumpcap three ways: on lo (pcapng), and on "any" as Linux cooked SLL and SLL2.
# Usage: capture_http.sh OUT_DIR PORT [ROUNDS]   (needs root, dumpcap, curl, python3)
set -euo pipefail
out=$1 port=$2 rounds=${3:-1}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

python3 "$here/http_server.py" "$port" >"$out/server.log" 2>&1 & pids+=($!)
caps=()
for spec in "lo:EN10MB:lo" "any:LINUX_SLL:sll" "any:LINUX_SLL2:sll2"; do
  IFS=: read -r iface dlt name <<<"$spec"
  dlt_arg=()
  [ "$iface" = any ] && dlt_arg=(-y "$dlt")
  rm -f "$out/$name.pcapng"
  dumpcap -q -i "$iface" "${dlt_arg[@]}" -f "tcp port $port" -w "$out/$name.pcapng" 2>"$out/dumpcap-$name.log" &
  caps+=($!)
  pids+=($!)
done
# Wait until the server answers and every capture has written its header.
for _ in $(seq 100); do
  ready=1
  for name in lo sll sll2; do [ -s "$out/$name.pcapng" ] || ready=0; done
  grep -q ready "$out/server.log" 2>/dev/null || ready=0
  [ $ready = 1 ] && break
  sleep 0.1
done
sleep 0.5

u=http://127.0.0.1:$port
# curl -s with every body sent to /dev/null; several URLs share one connection.
get() { local a=(); for x in "$@"; do case $x in http://*) a+=(-o /dev/null "$x") ;; *) a+=("$x") ;; esac; done; curl -s "${a[@]}"; }
for _ in $(seq "$rounds"); do
  # Keep-alive: several URLs on one connection.
  get "$u/hello" "$u/json?a=1&b=two" --compressed "$u/gzip" "$u/chunked" "$u/missing" "$u/nocontent" "$u/cached" "$u/size/200000"
  curl -s -o /dev/null -I "$u/hello"
  get -X POST -H 'Content-Type: application/x-www-form-urlencoded' --data-binary 'name=kubetap&x=1' "$u/create" "$u/echo"
  curl -s -o /dev/null -X PUT --data-binary '{"k":"v"}' -H 'Content-Type: application/json' "$u/echo"
  curl -s -o /dev/null -H 'Expect: 100-continue' --data-binary @/etc/services "$u/echo"
  curl -s -o /dev/null --http1.0 "$u/hello"
  curl -s -o /dev/null "$u/close"
  python3 "$here/pipelined_client.py" "$port"
done
sleep 0.5
kill -INT "${caps[@]}"
wait "${caps[@]}" 2>/dev/null || true
