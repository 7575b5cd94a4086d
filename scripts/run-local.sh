#!/usr/bin/env bash
# The whole system on one machine: moto seeded with a small organization (deploy/local/seed.py:
# 3 accounts, 2 Regions, objects, encryption requirements, an unreadable bucket, the event path
# of each account), the administrator (gRPC, dashboard, metrics) over mutual TLS with a
# throwaway CA issued at start (scripts/dev-certs.sh), and one agent per account, each with a
# certificate naming its account and reading its account's event queue. Runs in the
# foreground; Ctrl-C (SIGINT) or SIGTERM stops everything and exits 0. Once every agent has
# reported, prints the organization's statistics and what to run next (including
# scripts/demo-change.sh, which changes a bucket and sends its CloudTrail event).
#
# Environment: ESTATE_LOCAL_DIR (state, logs, certificates; default estate-data/local, emptied
# at start), ESTATE_LOCAL_GRPC_PORT (50051) and ESTATE_LOCAL_HTTP_PORT (8080); ESTATE_BIN_DIR:
# run the binaries already built there instead of building (the end-to-end test of this script
# passes the ones it tested, which `cargo build` alone would rebuild with other features).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup.sh >/dev/null
if [ -n "${ESTATE_BIN_DIR:-}" ]; then
  TARGET="$(cd "$ESTATE_BIN_DIR" && pwd)"
else
  echo "building (a first build on 2 cores takes about 11 minutes; later runs only check)"
  cargo build --workspace --bins
  TARGET="${CARGO_TARGET_DIR:-$REPO/target}/debug"
fi
RUN="${ESTATE_LOCAL_DIR:-$REPO/estate-data/local}"
# Emptied at start, but only if it is empty or an earlier demo's (never a directory of yours).
if [ -d "$RUN" ] && [ -n "$(ls -A "$RUN")" ] && [ ! -f "$RUN/seed.json" ] && [ ! -f "$RUN/estate.toml" ]; then
  echo "run-local: $RUN is not empty and holds no earlier demo; choose another ESTATE_LOCAL_DIR" >&2
  exit 1
fi
rm -rf "$RUN" && mkdir -p "$RUN"
RUN="$(cd "$RUN" && pwd)"
GRPC_PORT="${ESTATE_LOCAL_GRPC_PORT:-50051}"
HTTP_PORT="${ESTATE_LOCAL_HTTP_PORT:-8080}"
PY="$REPO/.venv/bin/python"

# Every background job of this script (moto, the administrator, the agents).
cleanup() {
  local jobs
  jobs="$(jobs -p)"
  [ -z "$jobs" ] || kill $jobs 2>/dev/null || true
  wait 2>/dev/null || true
}
stop() {
  trap - INT TERM
  echo "stopping"
  cleanup
  exit 0
}
trap cleanup EXIT
trap stop INT TERM

coproc MOTO { exec "$PY" scripts/moto_server.py --host 127.0.0.1 --port 0 2>"$RUN/moto.log"; }
if ! read -r ready port <&"${MOTO[0]}" || [ "$ready" != READY ]; then
  echo "moto did not start; see $RUN/moto.log" >&2
  exit 1
fi
ENDPOINT="http://127.0.0.1:$port"
"$PY" deploy/local/seed.py "$ENDPOINT" "$RUN/seed.json"

mapfile -t ACCOUNTS < <("$PY" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["organization"]["accounts"]))' "$RUN/seed.json")
TLS="$RUN/tls"
bash scripts/dev-certs.sh "$TLS" "${ACCOUNTS[@]}"

random_token() { echo "local-$1-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"; }
CLIENT_TOKEN="$(random_token operator)"
VIEWER_TOKEN="$(random_token viewer)"
{
  echo 'version = 1'
  # The organization seed.py made, with the OU path its organization-paths grant names.
  "$PY" deploy/local/demo.py organization "$RUN"
  for account in "${ACCOUNTS[@]}"; do
    printf '[[agents]]\nname = "agent-%s"\naccount_id = "%s"\ntoken = "local-agent-token-%s"\n' "$account" "$account" "$account"
  done
  printf '[[clients]]\nname = "local"\nrole = "operator"\ntoken = "%s"\n' "$CLIENT_TOKEN"
  printf '[[clients]]\nname = "viewer"\nrole = "read-only"\ntoken = "%s"\n' "$VIEWER_TOKEN"
} > "$RUN/estate.toml"

"$TARGET/estate-admin" serve --listen "127.0.0.1:$GRPC_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
  --data-dir "$RUN/data" --config "$RUN/estate.toml" \
  --tls-cert "$TLS/admin.pem" --tls-key "$TLS/admin-key.pem" --client-ca "$TLS/ca.pem" \
  >"$RUN/admin.out" 2>"$RUN/admin.log" &
for _ in $(seq 100); do grep -q ESTATE_ADMIN_READY "$RUN/admin.out" 2>/dev/null && break; sleep 0.1; done
grep -q ESTATE_ADMIN_READY "$RUN/admin.out" || { echo "estate-admin did not start; see $RUN/admin.log" >&2; exit 1; }

# seed.py switched on moto's IAM enforcement: each agent runs as its account's EstateAgent
# role (read-only, denied one bucket's policy in 333333333333), assumed with the demo user's keys.
for account in "${ACCOUNTS[@]}"; do
  read -r key secret session queue dead_letters < <("$PY" deploy/local/demo.py agent "$RUN" "$account")
  AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" AWS_SESSION_TOKEN="$session" \
    "$TARGET/estate-agent" run --admin "https://127.0.0.1:$GRPC_PORT" --token "local-agent-token-$account" \
    --ca "$TLS/ca.pem" --cert "$TLS/agent-$account.pem" --key "$TLS/agent-$account-key.pem" \
    --regions us-east-1,eu-west-1 --endpoint-url "$ENDPOINT" \
    --events-queue-url "$queue" --events-dead-letter-queue-url "$dead_letters" \
    2>"$RUN/agent-$account.log" &
done

# One `export NAME='value'` per line (scripts/demo-change.sh and the end-to-end test read it).
cat >"$RUN/env" <<ENV
export PATH='$TARGET':"\$PATH"
export ESTATE_LOCAL_DIR='$RUN'
export ESTATE_ENDPOINT='https://127.0.0.1:$GRPC_PORT'
export ESTATE_TOKEN='$CLIENT_TOKEN'
export ESTATE_CA='$TLS/ca.pem'
export ESTATE_CERT='$TLS/client.pem'
export ESTATE_KEY='$TLS/client-key.pem'
export ESTATE_DASHBOARD='https://127.0.0.1:$HTTP_PORT/'
export ESTATE_VIEWER_TOKEN='$VIEWER_TOKEN'
ENV
# shellcheck source=/dev/null
source "$RUN/env"

# Every agent's first refresh of both Regions, before the summary.
refreshed() {
  "$TARGET/estatectl" --output json members 2>/dev/null | "$PY" -c '
import json, sys
try:
    regions = [r for m in json.load(sys.stdin)["members"] for r in m.get("regions") or []]
except (ValueError, KeyError, TypeError):
    sys.exit(1)
sys.exit(0 if len(regions) == 2 * int(sys.argv[1]) and all(r.get("lastUpdated") for r in regions) else 1)' "${#ACCOUNTS[@]}"
}
for _ in $(seq 240); do refreshed && break; sleep 0.5; done
refreshed || echo "(the agents have not all reported yet; see $RUN/agent-*.log)"

cat <<TXT

Estate is running locally.
  moto (local AWS):  $ENDPOINT
  administrator:     grpc $ESTATE_ENDPOINT   dashboard $ESTATE_DASHBOARD
  TLS (mutual):      CA, certificates and keys in $TLS/ (a throwaway CA; trust $TLS/ca.pem)
                     gRPC requires a client certificate; the dashboard takes a token alone
  tokens:            operator $CLIENT_TOKEN
                     read-only $VIEWER_TOKEN
  logs:              $RUN/

The organization:
TXT
"$TARGET/estatectl" stats || true
cat <<TXT

Try:
  source $RUN/env
  estatectl members
  estatectl buckets --where publicAccess.effectivePermission=PUBLIC
  estatectl --output json bucket demo-111-us-east-1-website
  estatectl --output json bucket demo-333-restricted
  estatectl posture
  curl -s --cacert \$ESTATE_CA -H "Authorization: Bearer \$ESTATE_TOKEN" \${ESTATE_DASHBOARD}metrics

Change a bucket for the worse and watch the finding arrive (estatectl watch, or the
dashboard's findings page); each command makes the change through the S3 API and sends the
CloudTrail event through the account's EventBridge rule and SQS queue:
  scripts/demo-change.sh make-public demo-111-us-east-1-logs
  scripts/demo-change.sh share-outside demo-222-eu-west-1-logs
  scripts/demo-change.sh disable-bpa demo-333-us-east-1-data
  scripts/demo-change.sh revert demo-111-us-east-1-logs

Ctrl-C stops everything.
TXT
# Until Ctrl-C. The administrator and the agents take the terminal's SIGINT too and may all
# end first, and bash can then leave `wait` without running its trap: stop the same way.
wait
stop
