#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for the given time each
# (default 60s). A finding fails the run; go test writes the failing input
# under the package's testdata/fuzz/ so it becomes a regression test.
set -euo pipefail
fuzztime=${1:-60s}
cd "$(git rev-parse --show-toplevel)"
status=0
while IFS= read -r file; do
  dir=./$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    echo "== $dir $target ($fuzztime)"
    if ! go test "$dir" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime=100x; then
      status=1
    fi
  done
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz' | sort)
exit $status
