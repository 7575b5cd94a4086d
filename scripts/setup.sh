#!/usr/bin/env bash
# Estate machine setup: system libraries for the Rust build, a project-local Python
# virtualenv holding moto (the local S3/STS/Organizations/... test server) and the validators
# scripts/check-deploy.sh runs on deploy/ (cfn-lint, kubernetes-validate), and Chromium with
# playwright-core for the dashboard's browser test.
# Idempotent; meant to run as root on a fresh Debian 12 machine.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # REPO, VENV
MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.58.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"
OCSF_JSON_SCHEMA_VERSION="1.2.0"
JSONSCHEMA_VERSION="4.26.0"

log() { echo "setup: $*"; }

apt_updated=0
ensure_deb() {
    local pkg="$1"
    if dpkg -s "$pkg" >/dev/null 2>&1; then
        log "$pkg already installed"
        return
    fi
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        apt-get update -q
        apt_updated=1
    fi
    log "installing $pkg"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg"
}

ensure_deb libz3-dev
ensure_deb pkg-config
# The TLS tests check the dashboard with curl; the local demo issues certificates with openssl.
ensure_deb curl
ensure_deb openssl
# scripts/check-deploy.sh checks the units with systemd-analyze verify, and the alerting
# rules with promtool.
ensure_deb systemd
ensure_deb prometheus

# Pick a Python 3 (the machine's pyenv one if on PATH, else Debian's).
PY="$(command -v python3 || true)"
if [ -z "$PY" ]; then
    ensure_deb python3
    PY=/usr/bin/python3
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV with $PY"
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 needs python3-venv for ensurepip.
        rm -rf "$VENV"
        ensure_deb python3-venv
        "$PY" -m venv "$VENV"
    fi
else
    log "virtualenv $VENV already exists"
fi

# ensure_pip DISTRIBUTION VERSION [EXTRAS]: that exact version in the virtualenv.
ensure_pip() {
    local dist="$1" version="$2" extras="${3:-}" check
    check="import importlib.metadata as m; assert m.version('$dist') == '$version'"
    if "$VENV/bin/python" -c "$check" >/dev/null 2>&1; then
        log "$dist $version already installed in $VENV"
        return
    fi
    log "installing $dist$extras==$version into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$dist$extras==$version"
    "$VENV/bin/python" -c "$check"
    log "$dist $version ready"
}

ensure_pip moto "$MOTO_VERSION" "[server]"
# scripts/check-deploy.sh: CloudFormation linting, and Kubernetes schemas bundled in the
# package (it validates offline).
ensure_pip cfn-lint "$CFN_LINT_VERSION"
ensure_pip kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"
# The OCSF sink's test validates its output offline against the OCSF schema this package
# bundles (scripts/ocsf-validate.py), with jsonschema.
ensure_pip ocsf-json-schema "$OCSF_JSON_SCHEMA_VERSION"
ensure_pip jsonschema "$JSONSCHEMA_VERSION"

# The dashboard's browser test: Debian's Chromium, driven by playwright-core (pinned in
# tests/browser/package-lock.json) with the machine's Node.js.
ensure_deb chromium
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    ensure_deb nodejs
    ensure_deb npm
fi
PLAYWRIGHT_VERSION="$(cd "$REPO/tests/browser" && node -p 'require("./package.json").dependencies["playwright-core"]')"
installed="$(cd "$REPO/tests/browser" && node -p 'require("./node_modules/playwright-core/package.json").version' 2>/dev/null || true)"
if [ "$installed" = "$PLAYWRIGHT_VERSION" ]; then
    log "playwright-core $installed already installed in tests/browser"
else
    log "installing playwright-core into tests/browser (npm ci)"
    (cd "$REPO/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
log "done"
