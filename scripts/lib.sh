# shellcheck shell=bash disable=SC2034
# Sourced, not run, by the scripts that use the project's Python virtualenv: scripts/setup.sh
# creates it and installs into it, scripts/check-deploy.sh runs the validators it holds. It sets,
# for them (nothing here reads them, hence SC2034 off):
#
#   REPO   the repository's root
#   VENV   the project's virtualenv, $REPO/.venv
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
