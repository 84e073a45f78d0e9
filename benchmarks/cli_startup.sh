#!/usr/bin/env bash
# Wall time of `mlclipsim --help` and of each larger subcommand's --help (no torch import is needed for them).
#   bash benchmarks/cli_startup.sh > benchmarks/results/cli_startup.md
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# CLI start-up: wall time of --help"
echo
echo "Command: \`bash benchmarks/cli_startup.sh > benchmarks/results/cli_startup.md\` ($(uname -m), $(nproc) CPU cores, $(date -u +%Y-%m-%d), load $(cut -d' ' -f1 /proc/loadavg))."
echo
echo "| command | wall s (3 runs) |"
echo "|---|---|"
for args in "--help" "codec --help" "compress --help" "rate-task --help" "score --help"; do
  times=""
  for _ in 1 2 3; do
    t=$( { /usr/bin/time -f "%e" .venv/bin/mlclipsim $args > /dev/null; } 2>&1 | tail -1 )
    times="$times $t"
  done
  echo "| \`mlclipsim $args\` |$times |"
done
