#!/usr/bin/env bash
# Installs what pkid's demo and tests need on Debian: SoftHSM2, OpenSC
# (pkcs11-tool), sqlite3 and openssl. As root it uses apt-get; otherwise it
# names the packages to install and fails.
set -euo pipefail

need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v pkcs11-tool   >/dev/null 2>&1 || need+=(opensc)
command -v sqlite3       >/dev/null 2>&1 || need+=(sqlite3)
command -v openssl       >/dev/null 2>&1 || need+=(openssl)
[ -n "${PKID_EXTRA_PACKAGES:-}" ] && for p in $PKID_EXTRA_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done

if ! command -v go >/dev/null 2>&1; then
  echo "install-deps: Go is not on PATH; pkid needs Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") or newer (https://go.dev/dl/)" >&2
  exit 1
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${need[*]}" >&2
  echo "install-deps: run: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
