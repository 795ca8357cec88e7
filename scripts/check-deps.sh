#!/usr/bin/env bash
# Enforces the dependency rule of DESIGN.md §9: the core (issuer, policy and
# the pure checkers csr, goodkey) imports no HTTP, SQL, PKCS#11 or
# Prometheus code and no edge package; the adapters (hsm, store, metrics)
# import no core package; the HTTP edges (api, public, acme) reach the core
# but no adapter nor each other; and cmd/pkid reaches the rest through
# daemon only.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
for pkg in issuer policy csr goodkey; do
  bad=$(go list -deps "./$pkg/..." | grep -E "^(net/http|database/sql|github.com/miekg/pkcs11|github.com/ThalesGroup/crypto11|github.com/prometheus/.*|modernc.org/sqlite|github.com/jackc/.*|github.com/gorilla/mux)$|^$mod/(api|public|acme|daemon|hsm|store|metrics|linter)(/|$)" || true)
  if [ -n "$bad" ]; then echo "check-deps: $pkg imports what the core must not: $bad"; fail=1; fi
done
for pkg in hsm store metrics; do
  compgen -G "$pkg/*.go" >/dev/null || continue
  bad=$(go list -deps "./$pkg/..." | grep -E "^$mod/(api|public|acme|daemon|issuer|policy|csr|goodkey)(/|$)" || true)
  if [ -n "$bad" ]; then echo "check-deps: $pkg imports a core package: $bad"; fail=1; fi
done
for pkg in api public acme; do
  bad=$(go list -deps "./$pkg/..." | grep -E "^$mod/(daemon|hsm|store|metrics)(/|$)|^(database/sql|github.com/miekg/pkcs11|github.com/ThalesGroup/crypto11|github.com/prometheus/.*)$" || true)
  if [ -n "$bad" ]; then echo "check-deps: $pkg imports an adapter: $bad"; fail=1; fi
  others=$(echo "api public acme" | tr ' ' '\n' | grep -vx "$pkg" | paste -sd'|')
  bad=$(go list -deps "./$pkg/..." | grep -E "^$mod/($others)(/|$)" || true)
  if [ -n "$bad" ]; then echo "check-deps: the edge $pkg imports another edge: $bad"; fail=1; fi
done
bad=$(go list -f '{{join .Imports "\n"}}' ./cmd/pkid | grep -E "^$mod/" | grep -v "^$mod/daemon$" || true)
if [ -n "$bad" ]; then echo "check-deps: cmd/pkid must reach pkid's packages through daemon only, but imports: $bad"; fail=1; fi
exit $fail
