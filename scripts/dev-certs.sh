#!/usr/bin/env bash
# Throwaway certificates for Estate's local demo and the examples in deploy/README.md ("TLS
# and mutual TLS"): a fresh CA, an administrator certificate for 127.0.0.1 and localhost,
# one agent certificate per account (URI SAN estate:agent:ACCOUNT) and an operator client
# certificate (URI SAN estate:client:operator). All keys are ECDSA P-256, everything expires
# after 7 days, and the CA's key is discarded when the script ends (run it again for new
# certificates: every run makes a new CA). NOT a production CA.
#   scripts/dev-certs.sh DIR [ACCOUNT...]
# Writes into DIR: ca.pem, admin.pem, admin-key.pem, agent-ACCOUNT.pem, agent-ACCOUNT-key.pem,
# client.pem, client-key.pem (keys mode 0600). Needs only openssl.
set -euo pipefail

usage() { echo "usage: $0 DIR [ACCOUNT...]   (ACCOUNT: a 12-digit AWS account ID)" >&2; exit 2; }
[ "$#" -ge 1 ] || usage
DIR="$1"
shift
for account in "$@"; do
    [[ "$account" =~ ^[0-9]{12}$ ]] || { echo "dev-certs: \`$account\` is not a 12-digit account ID" >&2; usage; }
done
DAYS=7

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$DIR"

# Runs openssl silently; its output is shown only when it fails.
quiet() {
    local out
    if ! out="$("$@" 2>&1)"; then
        printf '%s\n' "$out" >&2
        echo "dev-certs: failed: $*" >&2
        return 1
    fi
}

# A minimal config, so the system's openssl.cnf (defaults, extra extensions) plays no part.
cat >"$WORK/openssl.cnf" <<'CNF'
[req]
distinguished_name = req_dn
[req_dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

new_key() {
    # umask: the key is never readable by others, not even for a moment.
    (umask 077 && quiet openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt ec_param_enc:named_curve -out "$1")
    chmod 0600 "$1"
}

# issue NAME COMMON_NAME EXTENDED_KEY_USAGE SUBJECT_ALT_NAME -> DIR/NAME.pem, DIR/NAME-key.pem
issue() {
    local name="$1" cn="$2" eku="$3" san="$4"
    new_key "$DIR/$name-key.pem"
    quiet openssl req -new -config "$WORK/openssl.cnf" -key "$DIR/$name-key.pem" \
        -subj "/O=Estate dev/CN=$cn" -out "$WORK/$name.csr"
    # Explicit v3 extensions: webpki (rustls) rejects v1 certificates, wants the key usage
    # and extended key usage of a leaf, and reads the identity from the SAN only.
    cat >"$WORK/$name.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EXT
    quiet openssl x509 -req -in "$WORK/$name.csr" -CA "$DIR/ca.pem" -CAkey "$WORK/ca-key.pem" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -sha256 \
        -extfile "$WORK/$name.ext" -out "$DIR/$name.pem"
}

new_key "$WORK/ca-key.pem"
quiet openssl req -new -x509 -config "$WORK/openssl.cnf" -extensions ca_ext -key "$WORK/ca-key.pem" \
    -subj "/O=Estate dev/CN=Estate dev CA $(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -sha256 -out "$DIR/ca.pem"

issue admin "estate-admin" serverAuth "DNS:localhost, IP:127.0.0.1"
for account in "$@"; do
    issue "agent-$account" "estate-agent $account" clientAuth "URI:estate:agent:$account"
done
issue client "estatectl operator" clientAuth "URI:estate:client:operator"

echo "dev-certs: CA, administrator, $# agent and 1 operator certificate(s) in $DIR (valid $DAYS days)"
