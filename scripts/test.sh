#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (scripts/setup.sh: libz3-dev,
# pkg-config, a project-local virtualenv with moto and the deploy validators, Chromium and
# playwright-core for the dashboard's browser test), builds the binaries the end-to-end tests
# start (estate-loadgen included), then runs the whole workspace's tests (unit tests, the
# policy corpus and property tests, and the end-to-end scenarios, which start and stop their
# own moto servers, administrators, agents and browser on loopback). Benchmarks are not run
# here: see BENCHMARKS.md.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup.sh
# With --tests, the binaries are built with the features the tests' dev-dependencies add (tokio's
# test-util among them), as `cargo test` below builds everything: without it, every crate above
# tokio (hyper, tonic, the AWS SDK) would be compiled twice.
cargo build --workspace --bins --tests
# The deploy artifacts, checked by the tools operators use, and proof that the checks bite.
ESTATE_BIN_DIR="${CARGO_TARGET_DIR:-$REPO/target}/debug" bash scripts/check-deploy.sh
ESTATE_BIN_DIR="${CARGO_TARGET_DIR:-$REPO/target}/debug" bash scripts/check-deploy.sh --self-test
# The test-side moto shim answers every S3 call the agent makes with the XML root the Rust SDK
# expects (a wrong shim would make the end-to-end tests test the shim).
"$REPO/.venv/bin/python" scripts/moto_check.py
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
# --no-fail-fast: one run shows every failing test binary, not only the first.
cargo test --workspace --lib --bins --tests --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
