#!/usr/bin/env bash
# The dashboard at organization scale (issue 31's acceptance run; not part of the suite, which
# runs the same checks on a small organization): release binaries, estate-loadgen filling one
# administrator with AGENTS members × REGIONS Regions × BUCKETS buckets (every 97th bucket of
# every 97th member public; then one bucket of every member loses its block public access,
# which raises a finding for each member whose bucket was not open already: 9,896 at the
# default size), then tests/browser/scale.mjs in Chromium against its
# dashboard with every agent connected. Prints each page's time to first render and height.
#   scripts/dashboard-scale.sh [AGENTS [REGIONS [BUCKETS]]]     (default 10000 2 100: 2M buckets)
# ESTATE_MAX_PAGE_HEIGHT (pixels, default 3000) is the height no page may pass;
# ESTATE_SCREENSHOTS=DIR keeps a picture of each page.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
AGENTS="${1:-10000}" REGIONS="${2:-2}" BUCKETS="${3:-100}"
bash scripts/setup.sh >/dev/null
cargo build --release -p estate-administrator -p estate-tests --bin estate-admin --bin estate-loadgen
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
"$BIN/estate-loadgen" --agents "$AGENTS" --regions "$REGIONS" --buckets "$BUCKETS" --public-every 97 \
  --expose-per-agent 1 --no-restart --admin-bin "$BIN/estate-admin" \
  --then "cd '$REPO/tests/browser' && node scale.mjs"
