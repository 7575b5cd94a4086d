#!/usr/bin/env bash
# Changes a bucket of the running local demo (scripts/run-local.sh) the way a member account
# would, and sends the CloudTrail event of the change through that account's real event path
# (EventBridge rule → SQS queue → the account's agent), so that Estate raises its finding live.
#   scripts/demo-change.sh make-public|share-outside|disable-bpa|revert BUCKET
# make-public: a policy statement letting anyone read objects; share-outside: one letting
# account 999999999999 read them; disable-bpa: the bucket's block public access settings
# deleted; revert: the policy and settings the bucket had before its first change.
# ESTATE_LOCAL_DIR: the demo's state directory, as given to run-local.sh.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" # a relative ESTATE_LOCAL_DIR means what it means to run-local.sh
RUN="${ESTATE_LOCAL_DIR:-$REPO/estate-data/local}"
usage() { echo "usage: $0 make-public|share-outside|disable-bpa|revert BUCKET" >&2; exit 2; }
[ "$#" = 2 ] || usage
case "$1" in make-public|share-outside|disable-bpa|revert) ;; *) usage ;; esac
[ -f "$RUN/seed.json" ] || { echo "no local demo in $RUN (no seed.json): start scripts/run-local.sh first" >&2; exit 1; }
exec "$REPO/.venv/bin/python" "$REPO/deploy/local/demo_change.py" "$RUN" "$1" "$2"
