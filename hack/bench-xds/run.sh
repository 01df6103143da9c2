#!/usr/bin/env bash
# The xDS scale benchmark (make bench-xds): for each N, a fresh
# `sidecar-injector xds` on loopback and the bench-xds load generator in a
# separate process simulating N proxies (one ADS stream each). Prints the
# table of docs/benchmarks.md and, per N, the top of the server's CPU profile.
#
#   BENCH_XDS_N="1000 5000 10000 20000"   proxy counts
#   BENCH_XDS_GROUPS=50             distinct port layouts (snapshots held)
#   BENCH_XDS_DISTINCT_N="10000"    also these proxy counts with one group each
#   BENCH_XDS_CONNS=                gRPC connections (default: one per 16 streams, the server's stream cap)
#   BENCH_XDS_TIMEOUT=120s          bound of each run
#   BENCH_XDS_OUT=                  keep logs, results and profiles here
#   BENCH_XDS_SERVER_GOGC=          GOGC of the server only (default: the binary's --gc-percent)
#   BENCH_XDS_SERVER_MEMORY_LIMIT=  --memory-limit of the server in bytes; default: what the chart's
#                                   values (xds.resources) give for N of these proxies, 16 per connection:
#                                   512Mi up to 10,000, 1Gi above (the runtime keeps to 85% of it)
#   BENCH_XDS_DOC=docs/benchmarks.md  the file whose "xds" section gets the table
set -euo pipefail
cd "$(dirname "$0")/../.."

ns=${BENCH_XDS_N:-1000 5000 10000 20000}
groups=${BENCH_XDS_GROUPS:-50}
# Also N proxies in N distinct groups (one snapshot each: memory grows with
# distinct groups), for each N listed here; empty: none.
distinct=${BENCH_XDS_DISTINCT_N-10000}
conns=${BENCH_XDS_CONNS:-0}
timeout=${BENCH_XDS_TIMEOUT:-120s}
out=${BENCH_XDS_OUT:-$(mktemp -d)}
mkdir -p "$out"
go=${GO:-go}

# memory_limit N: the xds pod's memory limit for N of the benchmark's
# proxies (16 per connection) on one replica, as the chart's values.yaml
# documents it (xds.resources).
memory_limit() {
  if [ -n "${BENCH_XDS_SERVER_MEMORY_LIMIT:-}" ]; then
    echo "$BENCH_XDS_SERVER_MEMORY_LIMIT"
  elif [ "$1" -le 10000 ]; then
    echo $((512 << 20))
  else
    echo $((1024 << 20))
  fi
}

pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

echo "bench-xds: building into $out" >&2
CGO_ENABLED=0 $go build -o "$out/sidecar-injector" ./cmd/sidecar-injector
CGO_ENABLED=0 $go build -o "$out/bench-xds" ./hack/bench-xds

rows=()
for run in $(for n in $ns; do echo "$n:$groups"; done) $(for n in $distinct; do echo "$n:$n"; done); do
  n=${run%%:*} g=${run##*:}
  mesh="$out/mesh-$n-$g.yaml"
  printf 'apiVersion: sidecar.io/v1alpha1\nkind: MeshConfig\n' >"$mesh"
  log="$out/server-$n-$g.log"
  limit=$(memory_limit "$n")
  env ${BENCH_XDS_SERVER_GOGC:+GOGC=$BENCH_XDS_SERVER_GOGC} "$out/sidecar-injector" xds --memory-limit "$limit" --listen-address 127.0.0.1:0 --health-address 127.0.0.1:0 \
    --mesh-config "$mesh" --log-format json --log-level info --shutdown-delay 0s --shutdown-grace 5s --check-pod-ip=false \
    --cpu-profile "$out/cpu-$n-$g.pprof" 2>"$log" &
  pid=$!
  grpc="" health=""
  for _ in $(seq 100); do
    line=$(grep -m1 '"xds server listening"' "$log" || true)
    if [ -n "$line" ]; then
      grpc=$(sed -n 's/.*"grpc":"\([^"]*\)".*/\1/p' <<<"$line")
      health=$(sed -n 's/.*"health":"\([^"]*\)".*/\1/p' <<<"$line")
      break
    fi
    kill -0 "$pid" 2>/dev/null || { echo "bench-xds: server exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$grpc" ] || { echo "bench-xds: server did not start within 10s:" >&2; cat "$log" >&2; exit 1; }

  echo "bench-xds: N=$n groups=$g" >&2
  "$out/bench-xds" -server "$grpc" -health "$health" -server-pid "$pid" -server-memory-limit "$limit" -n "$n" -conns "$conns" \
    -groups "$g" -mesh-file "$mesh" -timeout "$timeout" -cpu-profile "$out/loadgen-cpu-$n-$g.pprof" -json >"$out/result-$n-$g.json"
  rows+=("$("$out/bench-xds" -render "$out/result-$n-$g.json")")

  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
  $go tool pprof -top -nodecount=25 "$out/sidecar-injector" "$out/cpu-$n-$g.pprof" >"$out/profile-$n-$g.txt" 2>/dev/null || true
done

table="$out/table.md"
{
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $($go env GOVERSION), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; server GC percent: ${BENCH_XDS_SERVER_GOGC:-the binary default}, memory limit ${BENCH_XDS_SERVER_MEMORY_LIMIT:-the chart's for the row's proxies (512Mi up to 10,000, 1Gi above)}; $groups port layouts, and one per proxy where snapshots equal proxies."
echo
echo "| proxies | gRPC conns | snapshots | memory limit | connect all | first config to all | settings push ACKed by all (server side) | server RSS | RSS per proxy | server CPU connect / first / push | load generator CPU |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
} >"$table"
cat "$table"
$go run ./hack/docsection -file "${BENCH_XDS_DOC:-docs/benchmarks.md}" -section xds <"$table"
echo "bench-xds: table written to ${BENCH_XDS_DOC:-docs/benchmarks.md}" >&2
for f in "$out"/profile-*.txt; do
  echo
  echo "Server CPU profile, $(basename "$f" .txt) (top 25 by flat time; $f):"
  sed -n '1,32p' "$f"
done
