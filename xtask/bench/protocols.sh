#!/usr/bin/env bash
# Captures for the per-protocol benchmark: real servers and load generators on
# loopback, recorded by dumpcap. Usage: protocols.sh OUT_DIR (needs root).
# Writes redis.pcapng (redis-benchmark, pipelined), http2.pcapng (h2load
# against nghttpd), dns.pcapng (a Python client against dnsmasq), grpc.pcapng
# (h2load posting gRPC calls to a grpcio server), postgres.pcapng (pgbench
# against a throw-away server) and mixed.pcapng (all of them merged in time
# order, one file with every protocol), each with NAME.port for tshark.
set -euo pipefail
out=$1
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# capture NAME FILTER COMMAND...: runs COMMAND while dumpcap records FILTER on lo.
capture() {
  echo "$port" > "$out/$1.port"  # the server port, for tshark's decode-as
  local name=$1 filter=$2; shift 2
  rm -f "$out/$name.pcapng"
  dumpcap -q -i lo -B 256 -f "$filter" -w "$out/$name.pcapng.partial" 2>/dev/null &
  local cap=$!
  for _ in $(seq 100); do [ -s "$out/$name.pcapng.partial" ] && break; sleep 0.1; done
  sleep 0.5
  "$@" >/dev/null
  sleep 1
  kill -INT "$cap"; wait "$cap" || true
  mv "$out/$name.pcapng.partial" "$out/$name.pcapng"
}

wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing on port $1" >&2; exit 1; }

# Redis: 400k SET/GET, 16 commands per pipeline, 8 connections.
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
wait_port "$port"
capture redis "tcp port $port" redis-benchmark -p "$port" -n 200000 -P 16 -c 8 -t set,get -q

# HTTP/2: 200k requests for a 1 kB file, 4 connections, 10 streams each.
port=$(free_port)
mkdir -p "$work/www"
head -c 1024 /dev/zero | tr '\0' 'k' >"$work/www/item.json"
nghttpd --no-tls -d "$work/www" "$port" >/dev/null 2>&1 &
pids+=($!)
wait_port "$port"
capture http2 "tcp port $port" h2load -n 200000 -c 4 -m 10 "http://127.0.0.1:$port/item.json"

# DNS: 100k A queries over UDP from one client socket, answered by dnsmasq.
port=$(free_port)
/usr/sbin/dnsmasq --no-daemon --port="$port" --listen-address=127.0.0.1 --bind-interfaces \
  --no-resolv --no-hosts --address=/shop.test/10.1.2.3 --cache-size=1000 >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
capture dns "udp port $port" python3 - "$port" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
name = b"".join(bytes([len(p)]) + p for p in b"api.shop.test".split(b".")) + b"\0"
for i in range(100000):
    s.sendto(struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1), ("127.0.0.1", port))
    try:
        s.recv(512)
    except socket.timeout:
        pass
PY

# gRPC: 40k unary calls posted by h2load (4 connections, 10 streams each) to a
# grpcio server; each call's body is one length-prefixed protobuf message.
port=$(free_port)
python3 "$(dirname "$0")/../../tap-dissect/src/grpc/peer.py" serve "$port" >/dev/null 2>&1 &
pids+=($!)
wait_port "$port"
# field 1 (string) "bench": the greeter's request.
printf '\x00\x00\x00\x00\x07\x0a\x05bench' >"$work/call.bin"
capture grpc "tcp port $port" h2load -n 40000 -c 4 -m 10 -d "$work/call.bin" \
  -H 'content-type: application/grpc' -H 'te: trailers' \
  "http://127.0.0.1:$port/demo.Greeter/SayHello"

# PostgreSQL: pgbench's select-only script over the extended protocol, 4
# clients x 25k transactions, against a server initialised for this run (as
# nobody: PostgreSQL refuses root).
port=$(free_port)
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pgdata="$work/pgdata"
mkdir -p "$pgdata"
chown nobody: "$work" "$pgdata"
nobody=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups --)
"${nobody[@]}" "$pgbin/initdb" -D "$pgdata" -U postgres --auth=trust --no-sync --no-locale -E UTF8 >/dev/null
# setpriv execs the server, so $! is the postmaster itself and SIGINT stops it.
"${nobody[@]}" "$pgbin/postgres" -D "$pgdata" -k "$pgdata" -p "$port" \
  -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=off >/dev/null 2>&1 &
pgpid=$!
pids+=($pgpid)
wait_port "$port"
pgbench -h 127.0.0.1 -p "$port" -U postgres -i -s 1 -q postgres >/dev/null 2>&1
capture postgres "tcp port $port" pgbench -h 127.0.0.1 -p "$port" -U postgres -n -S -M extended -c 4 -t 25000 postgres
kill -INT "$pgpid"; wait "$pgpid" 2>/dev/null || true

# Every protocol in one file, merged in time order: how a node's traffic looks.
mergecap -F pcapng -w "$out/mixed.pcapng" "$out"/{redis,http2,dns,grpc,postgres}.pcapng
