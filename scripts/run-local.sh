#!/usr/bin/env bash
# The whole system on one machine: moto seeded with a small organization (3 accounts, 2
# Regions), the administrator (gRPC, dashboard, metrics) over mutual TLS with a throwaway CA
# issued at start (scripts/dev-certs.sh), and one agent per account, each with a certificate
# naming its account. Runs in the foreground; Ctrl-C stops everything. Prints what to run next.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash scripts/setup.sh
cargo build --workspace --bins
TARGET="${CARGO_TARGET_DIR:-$REPO/target}/debug"
RUN="$REPO/estate-data/local"
rm -rf "$RUN" && mkdir -p "$RUN"
GRPC_PORT="${ESTATE_LOCAL_GRPC_PORT:-50051}"
HTTP_PORT="${ESTATE_LOCAL_HTTP_PORT:-8080}"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

coproc MOTO { exec .venv/bin/python scripts/moto_server.py --host 127.0.0.1 --port 0 2>"$RUN/moto.log"; }
pids+=("$MOTO_PID")
read -r ready port <&"${MOTO[0]}"
[ "$ready" = READY ] || { echo "moto did not start; see $RUN/moto.log" >&2; exit 1; }
ENDPOINT="http://127.0.0.1:$port"
.venv/bin/python deploy/local/seed.py "$ENDPOINT"

ACCOUNTS=(111111111111 222222222222 333333333333)
TLS="$RUN/tls"
bash scripts/dev-certs.sh "$TLS" "${ACCOUNTS[@]}"

CLIENT_TOKEN="local-client-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
{
  echo 'version = 1'
  echo '[organization]'
  echo 'id = "o-localdemo01"'
  echo 'accounts = ["111111111111", "222222222222", "333333333333"]'
  for account in 111111111111 222222222222 333333333333; do
    printf '[[agents]]\nname = "agent-%s"\naccount_id = "%s"\ntoken = "local-agent-token-%s"\n' "$account" "$account" "$account"
  done
  printf '[[clients]]\nname = "local"\nrole = "operator"\ntoken = "%s"\n' "$CLIENT_TOKEN"
} > "$RUN/estate.toml"

"$TARGET/estate-admin" serve --listen "127.0.0.1:$GRPC_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
  --data-dir "$RUN/data" --config "$RUN/estate.toml" \
  --tls-cert "$TLS/admin.pem" --tls-key "$TLS/admin-key.pem" --client-ca "$TLS/ca.pem" \
  >"$RUN/admin.out" 2>"$RUN/admin.log" &
pids+=("$!")
for _ in $(seq 100); do grep -q ESTATE_ADMIN_READY "$RUN/admin.out" 2>/dev/null && break; sleep 0.1; done
grep -q ESTATE_ADMIN_READY "$RUN/admin.out" || { echo "estate-admin did not start; see $RUN/admin.log" >&2; exit 1; }

for account in "${ACCOUNTS[@]}"; do
  creds=$(.venv/bin/python - "$ENDPOINT" "$account" <<'PY'
import sys, boto3
sts = boto3.client("sts", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
c = sts.assume_role(RoleArn=f"arn:aws:iam::{sys.argv[2]}:role/EstateAgent", RoleSessionName="agent")["Credentials"]
print(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
PY
)
  read -r key secret session <<<"$creds"
  AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" AWS_SESSION_TOKEN="$session" \
    "$TARGET/estate-agent" run --admin "https://127.0.0.1:$GRPC_PORT" --token "local-agent-token-$account" \
    --ca "$TLS/ca.pem" --cert "$TLS/agent-$account.pem" --key "$TLS/agent-$account-key.pem" \
    --regions us-east-1,eu-west-1 --endpoint-url "$ENDPOINT" 2>"$RUN/agent-$account.log" &
  pids+=("$!")
done

cat <<TXT

Estate is running locally.
  moto (local AWS):  $ENDPOINT
  administrator:     grpc https://127.0.0.1:$GRPC_PORT   dashboard https://127.0.0.1:$HTTP_PORT/ (token below)
  TLS (mutual):      CA, certificates and keys in $TLS/ (a throwaway CA; trust $TLS/ca.pem)
                     gRPC requires a client certificate; the dashboard takes the token alone
  logs:              $RUN/

Try:
  export ESTATE_ENDPOINT=https://127.0.0.1:$GRPC_PORT ESTATE_TOKEN=$CLIENT_TOKEN
  export ESTATE_CA=$TLS/ca.pem ESTATE_CERT=$TLS/client.pem ESTATE_KEY=$TLS/client-key.pem
  $TARGET/estatectl members
  $TARGET/estatectl stats
  $TARGET/estatectl buckets --where publicAccess.effectivePermission=PUBLIC
  $TARGET/estatectl --output json bucket demo-111-us-east-1-website
  curl -s --cacert $TLS/ca.pem -H "Authorization: Bearer $CLIENT_TOKEN" https://127.0.0.1:$HTTP_PORT/metrics

Ctrl-C stops everything.
TXT
wait
