#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) with cargo-fuzz on the nightly toolchain,
# starting from the committed seed corpus (fuzz/seeds/TARGET) and keeping what it learns in
# a working corpus outside the clone. Prints each target's executions, its coverage (edges,
# features) and corpus size, and exits non-zero on the first crash; a crash input lands in
# fuzz/artifacts/TARGET, and `cargo test` replays the seeds and crash inputs of every target:
# policy/tests/fuzz_seeds.rs (policy_parser, policy_analyzer), common/tests/fuzz_seeds.rs
# (agent_message), member-agent/tests/fuzz_regressions.rs (inventory_report).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   ESTATE_FUZZ_WORKERS=2 scripts/fuzz.sh 1300 policy_analyzer   # one process per core
#
# Sanitizers are off (`--sanitizer none`): the code under test is safe Rust (`unsafe_code =
# "forbid"`), and the throughput is several times higher without AddressSanitizer. Every run
# is bounded in time (-max_total_time) and memory (-rss_limit_mb).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(policy_parser agent_message policy_analyzer inventory_report)

bash "$REPO/scripts/setup.sh" >/dev/null
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo +nightly install cargo-fuzz --locked
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/estate-target}/fuzz"
WORK="${ESTATE_FUZZ_CORPUS:-$HOME/.cache/estate-fuzz}"
cd "$REPO/fuzz"
WORKERS="${ESTATE_FUZZ_WORKERS:-1}"
for target in "${TARGETS[@]}"; do
    mkdir -p "$WORK/$target"
    echo "fuzz: $target for ${SECONDS_PER_TARGET}s x $WORKERS worker(s)"
    logs=()
    pids=()
    for worker in $(seq 1 "$WORKERS"); do
        log="$(mktemp)"
        logs+=("$log")
        cargo +nightly fuzz run --sanitizer none "$target" "$WORK/$target" "seeds/$target" -- \
            -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
            -seed="$worker" >"$log" 2>&1 &
        pids+=($!)
    done
    status=0
    for pid in "${pids[@]}"; do
        wait "$pid" || status=$?
    done
    execs=0
    for log in "${logs[@]}"; do
        n="$(awk '/stat::number_of_executed_units/ { print $NF }' "$log" | tail -1)"
        execs=$((execs + ${n:-0}))
    done
    echo "fuzz: $target: $execs executions in ${SECONDS_PER_TARGET}s x $WORKERS worker(s), exit $status"
    # Coverage as libFuzzer counts it at each worker's last status line: covered edges (cov),
    # features (ft) and the corpus it holds (inputs/bytes); and the working corpus on disk.
    for log in "${logs[@]}"; do
        last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
        echo "fuzz: $target: worker's last status: ${last:-none}"
    done
    echo "fuzz: $target: working corpus $(find "$WORK/$target" -type f | wc -l) inputs, $(du -sh "$WORK/$target" | cut -f1)"
    if [ "$status" != 0 ]; then
        for log in "${logs[@]}"; do
            grep -E "panicked|^policy:|Running|deadly|ERROR" "$log" | head -20
            tail -30 "$log"
        done
        rm -f "${logs[@]}"
        exit "$status"
    fi
    rm -f "${logs[@]}"
done
