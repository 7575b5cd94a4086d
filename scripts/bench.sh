#!/usr/bin/env bash
# Runs a benchmark command several times and keeps what it printed, with the machine it ran on.
#
#   scripts/bench.sh [-n RUNS] NAME -- COMMAND [ARGS...]
#
# Prints a header (commit, CPU model, cores, kernel, the filesystem of TMPDIR where the
# benchmarks keep their data, load average and steal time before and after), runs COMMAND RUNS
# times (5 by default) one after another, and writes the header and each run's raw output under
# bench-results/NAME/<UTC time>-<commit>/. Then, for every line of the form `label: number ...`
# (label without a comma) that each run printed, the median and the range over the runs.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs=5
if [[ "${1:-}" == "-n" ]]; then
    runs="$2"
    shift 2
fi
name="${1:?usage: scripts/bench.sh [-n RUNS] NAME -- COMMAND [ARGS...]}"
shift
[[ "${1:-}" == "--" ]] && shift
(($# > 0)) || { echo "no command given" >&2; exit 2; }

commit="$(git -C "$REPO" rev-parse --short=12 HEAD)"
if [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]]; then
    commit="$commit-dirty"
fi
out="$REPO/bench-results/$name/$(date -u +%Y%m%dT%H%M%SZ)-$commit"
mkdir -p "$out"

# Steal time, in clock ticks summed over every CPU (the eighth value of /proc/stat's cpu line).
steal() { awk '/^cpu / { print $9 }' /proc/stat; }

header() {
    local data="${TMPDIR:-/tmp}"
    echo "benchmark:  $name ($runs runs)"
    echo "command:    $*"
    echo "commit:     $commit"
    echo "date:       $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu:        $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "cores:      $(nproc)"
    echo "memory:     $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel:     $(uname -r)"
    echo "data dir:   $data on $(df -T "$data" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
}

{
    header "$@"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/header.txt"
steal_before="$(steal)"

for ((i = 1; i <= runs; i++)); do
    echo "--- run $i of $runs"
    "$@" 2>&1 | tee "$out/run-$i.txt"
done

{
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "steal during the runs: $(($(steal) - steal_before)) ticks of $(getconf CLK_TCK)/s over all CPUs"
} | tee -a "$out/header.txt"

# Median and range of every `label: number` line, over the runs.
summary="$out/summary.txt"
awk '
    FNR == 1 { run++ }
    match($0, /^[^:,]+:[ \t]+[0-9][0-9.,]*/) {
        label = substr($0, 1, index($0, ":") - 1)
        rest = substr($0, index($0, ":") + 1)
        sub(/^[ \t]+/, "", rest)
        split(rest, words, /[ \t]/)
        value = words[1]
        gsub(/,/, "", value)
        if (!(label in count)) order[++labels] = label
        values[label, ++count[label]] = value + 0
    }
    END {
        for (l = 1; l <= labels; l++) {
            label = order[l]
            n = count[label]
            for (i = 1; i <= n; i++) sorted[i] = values[label, i]
            for (i = 2; i <= n; i++) for (j = i; j > 1 && sorted[j - 1] > sorted[j]; j--) {
                t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t
            }
            median = (n % 2) ? sorted[(n + 1) / 2] : (sorted[n / 2] + sorted[n / 2 + 1]) / 2
            printf "%-50s median %g  range %g-%g  (%d values)\n", label, median, sorted[1], sorted[n], n
        }
    }' "$out"/run-*.txt | tee "$summary"
echo "raw outputs: ${out#"$REPO/"}"
