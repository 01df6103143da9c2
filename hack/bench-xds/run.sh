#!/usr/bin/env bash
# The xDS scale benchmark (make bench-xds): for each N, a fresh
# `sidecar-injector xds` on loopback and the bench-xds load generator in a
# separate process simulating N proxies (one ADS stream each). Prints the
# table of docs/benchmarks.md and, per N, the top of the server's CPU profile.
#
#   BENCH_XDS_N="1000 5000 10000"   proxy counts
#   BENCH_XDS_GROUPS=50             distinct port layouts (snapshots held)
#   BENCH_XDS_DISTINCT_N="10000"    also these proxy counts with one group each
#   BENCH_XDS_CONNS=                gRPC connections (default: one per 16 streams, the server's stream cap)
#   BENCH_XDS_TIMEOUT=120s          bound of each run
#   BENCH_XDS_OUT=                  keep logs, results and profiles here
#   BENCH_XDS_SERVER_GOGC=          GOGC of the server only (default: the binary's --gc-percent)
#   BENCH_XDS_SERVER_MEMORY_LIMIT=536870912  --memory-limit of the server in bytes (the chart passes the xds pod's 512Mi limit; the runtime keeps to 85%)
#   BENCH_XDS_DOC=docs/benchmarks.md  the file whose "xds" section gets the table
set -euo pipefail
cd "$(dirname "$0")/../.."

ns=${BENCH_XDS_N:-1000 5000 10000}
groups=${BENCH_XDS_GROUPS:-50}
# Also N proxies in N distinct groups (one snapshot each: memory grows with
# distinct groups), for each N listed here; empty: none.
distinct=${BENCH_XDS_DISTINCT_N-10000}
conns=${BENCH_XDS_CONNS:-0}
timeout=${BENCH_XDS_TIMEOUT:-120s}
out=${BENCH_XDS_OUT:-$(mktemp -d)}
mkdir -p "$out"
go=${GO:-go}

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
  env ${BENCH_XDS_SERVER_GOGC:+GOGC=$BENCH_XDS_SERVER_GOGC} "$out/sidecar-injector" xds --memory-limit "${BENCH_XDS_SERVER_MEMORY_LIMIT:-536870912}" --listen-address 127.0.0.1:0 --health-address 127.0.0.1:0 \
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
  "$out/bench-xds" -server "$grpc" -health "$health" -server-pid "$pid" -n "$n" -conns "$conns" \
    -groups "$g" -mesh-file "$mesh" -timeout "$timeout" -json >"$out/result-$n-$g.json"
  rows+=("$("$out/bench-xds" -render "$out/result-$n-$g.json")")

  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
  $go tool pprof -top -nodecount=25 "$out/sidecar-injector" "$out/cpu-$n-$g.pprof" >"$out/profile-$n-$g.txt" 2>/dev/null || true
done

table="$out/table.md"
{
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $($go env GOVERSION); server GC percent: ${BENCH_XDS_SERVER_GOGC:-the binary default}, memory limit ${BENCH_XDS_SERVER_MEMORY_LIMIT:-536870912} bytes (the chart's 512Mi); $groups port layouts, and one per proxy where snapshots equal proxies."
echo
echo "| proxies | gRPC conns | snapshots | connect all | first config to all | settings push ACKed by all (server side) | server RSS | RSS per proxy | server CPU connect / first / push | load generator CPU |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
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
