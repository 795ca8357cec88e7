#!/usr/bin/env bash
# Enforces the dependency rule of DESIGN.md §9: the core (issuer, policy)
# imports no HTTP, SQL, PKCS#11 or Prometheus code and no edge package; the
# adapters (hsm, store, metrics) import no core package.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
for pkg in issuer policy; do
  bad=$(go list -deps "./$pkg/..." | grep -E "^(net/http|database/sql|github.com/miekg/pkcs11|github.com/ThalesGroup/crypto11|github.com/prometheus/.*|modernc.org/sqlite|github.com/gorilla/mux)$|^$mod/(api|daemon|hsm|store|metrics|linter)(/|$)" || true)
  if [ -n "$bad" ]; then echo "check-deps: $pkg imports what the core must not: $bad"; fail=1; fi
done
for pkg in hsm store metrics; do
  compgen -G "$pkg/*.go" >/dev/null || continue
  bad=$(go list -deps "./$pkg/..." | grep -E "^$mod/(api|daemon|issuer|policy)(/|$)" || true)
  if [ -n "$bad" ]; then echo "check-deps: $pkg imports a core package: $bad"; fail=1; fi
done
exit $fail
