#!/usr/bin/env bash
# Benchmarks the admission webhook against the null webhook of the shared
# benchmark kit (../shared/bench: admitload + nullhook), one after the other
# on this machine, and writes the ratio table into docs/benchmarks.md (its
# "webhook" generated section; the analysis around it is kept).
#
# Environment (all optional):
#   BENCH_DURATION     measured time per run          (default 10s)
#   BENCH_REPS         repetitions                    (default 3)
#   BENCH_CONCURRENCY  comma-separated levels          (default 1,16,64)
#   BENCH_WARMUP       unmeasured warm-up per run      (default 1s)
#   BENCH_KIT          the kit's directory             (default <repo>/../shared/bench)
#   BENCH_OUT          the Markdown file updated       (default docs/benchmarks.md)
#   BENCH_PROFILE      if set, a CPU profile of the webhook at c=16 is written there
#   BENCH_WEBHOOK_FLAGS extra flags of the webhook, to compare settings (the report names them)
# A quick run: BENCH_DURATION=2s BENCH_REPS=1 hack/bench-webhook.sh
set -euo pipefail

root=$(git rev-parse --show-toplevel)
kit=${BENCH_KIT:-$root/../shared/bench}
if [ ! -f "$kit/admitload/go.mod" ] || [ ! -f "$kit/nullhook/go.mod" ]; then
  echo "bench-webhook: the benchmark kit is not at $kit (want admitload/ and nullhook/ there); set BENCH_KIT" >&2
  exit 1
fi
cd "$root"
table=$(mktemp)
trap 'rm -f "$table"' EXIT
go run ./hack/benchwebhook \
  -kit "$kit" \
  -out "$table" \
  -duration "${BENCH_DURATION:-10s}" \
  -warmup "${BENCH_WARMUP:-1s}" \
  -reps "${BENCH_REPS:-3}" \
  -concurrency "${BENCH_CONCURRENCY:-1,16,64}" \
  -profile "${BENCH_PROFILE:-}" \
  -webhook-flags "${BENCH_WEBHOOK_FLAGS:-}"
go run ./hack/docsection -file "${BENCH_OUT:-docs/benchmarks.md}" -section webhook <"$table"
