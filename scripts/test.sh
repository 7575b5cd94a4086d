#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (scripts/setup.sh: libz3-dev,
# pkg-config, a project-local virtualenv with moto), builds the binaries the end-to-end tests
# start, then runs the whole workspace's tests. The end-to-end tests start and stop their own
# moto servers, administrators and agents on loopback.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup.sh
cargo build --workspace --bins
cargo test --workspace
