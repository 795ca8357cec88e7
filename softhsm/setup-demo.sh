#!/usr/bin/env bash
# setup-demo.sh DIR — builds pkid's demo environment under DIR (DESIGN.md §10):
#   DIR/softhsm2.conf, DIR/tokens/   a SoftHSM2 token "pkid-demo" holding every CA key
#   DIR/hsm-pin                      the token's user PIN (mode 0600)
#   DIR/ca/root.pem                  root CA, EC P-384
#   DIR/ca/ec-issuing.pem            issuing CA, EC P-256, signed by the root
#   DIR/ca/rsa-issuing.pem           issuing CA, RSA-3072, signed by the root
#   DIR/tls/ca.pem                   mTLS CA (its key is in the token too)
#   DIR/tls/server.pem, server-key.pem        for 127.0.0.1, ::1 and localhost
#   DIR/tls/client.pem, client-key.pem        identity allowed on every demo profile
#   DIR/tls/intruder.pem, intruder-key.pem    valid, allowed on no profile
#   DIR/audit/audit-key.pem          public half of the audit key (its private half is in the token)
#                                    and an OCSP responder key per issuing CA, in the token
#   DIR/identity/                    machine identity demo-agent (DESIGN.md §15): client-id,
#                                    client-secret, static-token (mode 0600; the config keeps
#                                    only their hashes) and token-key, which signs access tokens
#   DIR/acme/                        ACME (DESIGN.md §17): eab-secret, from which external account
#                                    binding keys are derived, and one such key for web-server's
#                                    directory, made by pkid acme eab add: eab-kid, eab-hmac-key (0600)
#   DIR/pkid.yaml                    three profiles: web-server (also served by ACME, with EAB),
#                                    internal-services, prod-clients
# No CA private key ever exists outside the token. Idempotent: a complete
# DIR is kept (pkid.yaml is rewritten for PKID_API_ADDR / PKID_METRICS_ADDR /
# PKID_PUBLIC_ADDR / PKID_ACME_HTTP_PORT / PKID_ACME_TLS_ALPN_PORT);
# an incomplete one is rebuilt.
set -euo pipefail

DIR=${1:?usage: setup-demo.sh DIR}
API_ADDR=${PKID_API_ADDR:-127.0.0.1:8443}
METRICS_ADDR=${PKID_METRICS_ADDR:-127.0.0.1:9464}
PUBLIC_ADDR=${PKID_PUBLIC_ADDR:-127.0.0.1:8080}
# Where ACME challenges are checked: the demo's names resolve to 127.0.0.1
# (acme.hostOverrides), and clients answer on unprivileged ports.
ACME_HTTP_PORT=${PKID_ACME_HTTP_PORT:-8402}
ACME_TLS_ALPN_PORT=${PKID_ACME_TLS_ALPN_PORT:-8403}
here=$(cd "$(dirname "$0")" && pwd)
PKID=${PKID_BIN:-$here/../bin/pkid}
TOKEN=pkid-demo
CLIENT_ID=spiffe://example.internal/demo-client
INTRUDER_ID=spiffe://example.internal/intruder
# Profiles match typed identities (DESIGN.md §2): uri:, dns:, cn:, machine:.
CLIENT_IDENTITY="uri:$CLIENT_ID"
MACHINE=demo-agent
MACHINE_IDENTITY="machine:$MACHINE"

[ -x "$PKID" ] || { echo "setup-demo: $PKID not built (run make build)" >&2; exit 1; }
command -v softhsm2-util >/dev/null || { echo "setup-demo: softhsm2-util missing (apt-get install softhsm2)" >&2; exit 1; }
MODULE=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  [ -f "$m" ] && { MODULE=$m; break; }
done
[ -n "$MODULE" ] || { echo "setup-demo: libsofthsm2.so not found" >&2; exit 1; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# begin_part D succeeds when part D of the demo is still to be made, after
# making D afresh and private; it fails when D/.complete says it is made.
begin_part() {
  [ -f "$1/.complete" ] && return 1
  rm -rf "$1"
  mkdir -p "$1"
  chmod 700 "$1"
}

# ensure_identity makes the demo machine identity once: its secrets stay in
# DIR/identity (0600), the config gets their hashes from the stanzas pkid
# printed. It needs no token, so an older demo directory gains it too.
ensure_identity() {
  local id="$DIR/identity"
  begin_part "$id" || return 0
  "$PKID" identity add --name "$MACHINE" --secret-file "$id/client-secret" >"$id/machine.yaml"
  "$PKID" identity token --name "$MACHINE" --token-file "$id/static-token" >"$id/static-token.yaml"
  sed -n 's/^    clientId: //p' "$id/machine.yaml" | tr -d '\n' >"$id/client-id"
  (umask 077 && head -c 32 /dev/urandom >"$id/token-key")
  touch "$id/.complete"
}

# ensure_acme makes the EAB secret and one EAB key for web-server's ACME
# directory, once (an older demo directory gains them too). The key's MAC
# is written to DIR/acme/eab-hmac-key; the database keeps only its hash.
ensure_acme() {
  local a="$DIR/acme"
  begin_part "$a" || return 0
  (umask 077 && head -c 32 /dev/urandom >"$a/eab-secret")
  "$PKID" acme eab add --config "$DIR/pkid.yaml" --profile web-server --key-file "$a/eab-hmac-key" >"$a/eab.txt"
  sed -n 's/^kid: //p' "$a/eab.txt" | tr -d '\n' >"$a/eab-kid"
  touch "$a/.complete"
}

write_config() {
  local tmp="$DIR/.pkid.yaml.tmp"
  local client_id secret_hash token_hash
  client_id=$(cat "$DIR/identity/client-id")
  secret_hash=$(sed -n 's/^    clientSecretHash: //p' "$DIR/identity/machine.yaml")
  token_hash=$(sed -n 's/^      - //p' "$DIR/identity/static-token.yaml")
  cat >"$tmp" <<YAML
# pkid demo configuration, written by softhsm/setup-demo.sh. Relative paths
# are relative to this file. The token PIN is in hsm-pin, never here.
listen: "$API_ADDR"
metricsListen: "$METRICS_ADDR"
# CRLs and CA certificates over plain HTTP; the issuing CAs name these URLs
# in every certificate, so openssl verify -crl_check -crl_download works.
publicListen: "$PUBLIC_ADDR"
crl:
  validity: 7d
  maxDelay: 2s
ocsp:
  validity: 12h
  responderValidity: 30d
tls:
  certificate: tls/server.pem
  key: tls/server-key.pem
  clientCAs: tls/ca.pem
database: pkid.db
# Infisical's v1 surface (DESIGN.md §15): the machine identity demo-agent
# logs in with DIR/identity/client-id and client-secret (universal auth) or
# sends DIR/identity/static-token as its Bearer (token auth).
machineIdentities:
  - name: $MACHINE
    clientId: $client_id
    clientSecretHash: $secret_hash
    accessTokenTTL: 2h
    accessTokenMaxTTL: 24h
    staticTokens: [$token_hash]
accessTokens:
  keyFile: identity/token-key
project:
  id: 6e7c3d3a-52a4-4b8e-9d0c-2a6a4f2c1b11
  slug: pkid-demo
  name: pkid demo
applications:
  - id: 0c4f7a52-8d21-4f51-a3f4-9a1b2c3d4e5f
    name: web
    profiles: [web-server, internal-services]
  - id: 5d2e8b90-1f3c-4a6b-8e7d-6c5b4a392817
    name: clients
    profiles: [prod-clients]
# What every profile's ACME server shares (DESIGN.md §17). In production
# http-01 and tls-alpn-01 connect to ports 80 and 443 of the names a client
# orders, as DNS resolves them; the demo's names do not exist, so they are
# pointed at 127.0.0.1 (hostOverrides takes loopback addresses only) and
# clients answer on unprivileged ports.
acme:
  eabKeyFile: acme/eab-secret
  httpPort: $ACME_HTTP_PORT
  tlsALPNPort: $ACME_TLS_ALPN_PORT
  hostOverrides:
    example.internal: 127.0.0.1
    www.example.internal: 127.0.0.1
    app.example.internal: 127.0.0.1
    api.example.internal: 127.0.0.1
audit:
  keyLabel: pkid-audit
  publicKey: audit/audit-key.pem
hsm:
  module: $MODULE
  tokenLabel: $TOKEN
  pinFile: hsm-pin
  maxSessions: 8
  environment:
    SOFTHSM2_CONF: softhsm2.conf
cas:
  - name: root
    certificate: ca/root.pem
    keyLabel: pkid-root
  - name: ec-issuing
    certificate: ca/ec-issuing.pem
    keyLabel: pkid-ec-issuing
    parent: root
    ocspKeyLabel: pkid-ocsp-ec-issuing
    crlURLs: ["http://$PUBLIC_ADDR/crl/ec-issuing.crl"]
    issuingCertificateURLs: ["http://$PUBLIC_ADDR/ca/ec-issuing.crt"]
    ocspURLs: ["http://$PUBLIC_ADDR/ocsp"]
  - name: rsa-issuing
    certificate: ca/rsa-issuing.pem
    keyLabel: pkid-rsa-issuing
    parent: root
    ocspKeyLabel: pkid-ocsp-rsa-issuing
    crlURLs: ["http://$PUBLIC_ADDR/crl/rsa-issuing.crl"]
    issuingCertificateURLs: ["http://$PUBLIC_ADDR/ca/rsa-issuing.crt"]
    ocspURLs: ["http://$PUBLIC_ADDR/ocsp"]
profiles:
  - id: b59e644e-e2ee-4dec-871e-2ac6f5ac2f0e
    name: web-server
    ca: ec-issuing
    # ACME at https://$API_ADDR/acme/web-server/directory, for accounts
    # bound to a key from pkid acme eab add (DIR/acme/eab-kid, eab-hmac-key).
    acme: {enabled: true, externalAccountRequired: true}
    allowedIdentities: ["$CLIENT_IDENTITY", "$MACHINE_IDENTITY"]
    managers: ["$CLIENT_IDENTITY", "$MACHINE_IDENTITY"]
    defaults:
      keyUsages: [digital_signature]
      extendedKeyUsages: [server_auth]
    policy:
      commonName:
        allowed: [example.internal, "*.example.internal"]
      altNames:
        dns_name:
          allowed: [example.internal, "*.example.internal"]
        ip_address:
          allowed: ["10.*", 127.0.0.1]
      keyUsages:
        allowed: [digital_signature, key_encipherment]
      extendedKeyUsages:
        allowed: [server_auth, client_auth]
      signatureAlgorithms: ["ECDSA-*"]
      keyAlgorithms: [RSA_2048, RSA_3072, RSA_4096, EC_prime256v1, EC_secp384r1, EC_secp521r1]
      maxValidity: 90d
  - id: a1e5a186-5d12-4ffb-81c5-2e93d83a049f
    name: internal-services
    ca: rsa-issuing
    allowedIdentities: ["$CLIENT_IDENTITY", "$MACHINE_IDENTITY"]
    managers: ["$CLIENT_IDENTITY", "$MACHINE_IDENTITY"]
    defaults:
      keyUsages: [digital_signature, key_encipherment]  # key_encipherment is dropped for EC leaf keys
      extendedKeyUsages: [server_auth, client_auth]
    # Service-mesh certificates: server_auth with SPIFFE URI and e-mail SANs,
    # living up to a year. The CA/B Forum rules behind these lints govern
    # publicly-trusted TLS (BR 7.1.2.7.12 SAN types; SC-081 validity limits),
    # not a private mesh.
    lintExclusions:
      - e_ext_san_uniform_resource_identifier_present
      - e_ext_san_rfc822_name_present
      - e_server_cert_valid_time_longer_than_200_days
      - w_server_cert_valid_time_longer_than_199_days
      - e_server_cert_valid_time_longer_than_100_days
      - w_server_cert_valid_time_longer_than_99_days
      - e_server_cert_valid_time_longer_than_47_days
      - w_server_cert_valid_time_longer_than_46_days
    policy:
      commonName:
        allowed: ["*.svc.example.internal"]
      altNames:
        dns_name:
          allowed: ["*.svc.example.internal"]
        uri:
          allowed: ["spiffe://example.internal/*"]
        email:
          allowed: ["*@example.internal"]
      keyUsages:
        allowed: ["*"]
        denied: [key_cert_sign, crl_sign]
      extendedKeyUsages:
        allowed: ["*"]  # never code_signing, time_stamping or ocsp_signing: those must be named (DESIGN.md §3)
      signatureAlgorithms: ["RSA-*"]
      keyAlgorithms: [RSA_2048, RSA_3072, RSA_4096, EC_prime256v1, EC_secp384r1, EC_secp521r1]
      maxValidity: 365d
  - id: 13646ca2-2a8e-4d37-aa4e-641fc7771122
    name: prod-clients
    ca: ec-issuing
    allowedIdentities: ["$CLIENT_IDENTITY", "$MACHINE_IDENTITY"]
    managers: ["$CLIENT_IDENTITY", "$MACHINE_IDENTITY"]
    defaults:
      keyUsages: [digital_signature]
      extendedKeyUsages: [client_auth]
    policy:
      commonName:
        required: ["*.prod.example.internal"]
      keyUsages:
        allowed: [digital_signature]
      extendedKeyUsages:
        required: [client_auth]
        denied: [server_auth]
      signatureAlgorithms: [ECDSA-SHA256]
      keyAlgorithms: [EC_prime256v1]
      maxValidity: 24h
YAML
  mv "$tmp" "$DIR/pkid.yaml"
}

if [ -f "$DIR/.complete" ]; then
  ensure_identity
  write_config
  ensure_acme
  echo "setup-demo: $DIR is already set up; rewrote $DIR/pkid.yaml (api $API_ADDR, metrics $METRICS_ADDR, public $PUBLIC_ADDR)"
  exit 0
fi

# Start from nothing: an interrupted earlier run may have left a token
# with keys whose certificates were never written.
rm -rf "$DIR/tokens" "$DIR/ca" "$DIR/tls" "$DIR/audit" "$DIR/identity" "$DIR/acme" "$DIR"/pkid.db* "$DIR/hsm-pin" "$DIR/hsm-so-pin"
mkdir -p "$DIR/tokens" "$DIR/ca" "$DIR/tls" "$DIR/audit"
chmod 700 "$DIR/tokens"
cat >"$DIR/softhsm2.conf" <<CONF
directories.tokendir = $DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF=$DIR/softhsm2.conf

umask 077
od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$DIR/hsm-pin"
od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$DIR/hsm-so-pin"
umask 022
softhsm2-util --init-token --free --label "$TOKEN" --so-pin "$(cat "$DIR/hsm-so-pin")" --pin "$(cat "$DIR/hsm-pin")" >/dev/null

tok=(--module "$MODULE" --token-label "$TOKEN" --pin-file "$DIR/hsm-pin")
"$PKID" ca create-root "${tok[@]}" --label pkid-root --key-type ec-p384 \
  --cn "pkid Demo Root CA" --org "pkid demo" --validity 10y --out "$DIR/ca/root.pem"
"$PKID" ca create-intermediate "${tok[@]}" --label pkid-ec-issuing --key-type ec-p256 \
  --cn "pkid Demo EC Issuing CA" --org "pkid demo" --parent-label pkid-root --parent-cert "$DIR/ca/root.pem" \
  --validity 5y --max-path-len 0 --out "$DIR/ca/ec-issuing.pem"
"$PKID" ca create-intermediate "${tok[@]}" --label pkid-rsa-issuing --key-type rsa-3072 \
  --cn "pkid Demo RSA Issuing CA" --org "pkid demo" --parent-label pkid-root --parent-cert "$DIR/ca/root.pem" \
  --validity 5y --max-path-len 0 --out "$DIR/ca/rsa-issuing.pem"

# The audit key signs checkpoints of the audit chain (DESIGN.md §6).
"$PKID" ca create-audit-key "${tok[@]}" --label pkid-audit --key-type ec-p256 --out "$DIR/audit/audit-key.pem"

# A delegated OCSP responder key per issuing CA; pkid certifies it itself.
for ca in ec-issuing rsa-issuing; do
  "$PKID" ca create-ocsp-key "${tok[@]}" --ca "$ca" --key-type ec-p256 >/dev/null
done

# The mTLS CA also keeps its key in the token, marked for that one job:
# issue-tls signs with no other key, and no CA setting accepts it.
"$PKID" ca create-mtls-ca "${tok[@]}" --label pkid-tls-ca --key-type ec-p256 \
  --cn "pkid Demo mTLS CA" --org "pkid demo" --validity 10y --out "$DIR/tls/ca.pem"
tls=("${tok[@]}" --ca-label pkid-tls-ca --ca-cert "$DIR/tls/ca.pem" --validity 2y)
"$PKID" ca issue-tls "${tls[@]}" --server --cn localhost --dns localhost --ip 127.0.0.1 --ip ::1 \
  --out "$DIR/tls/server.pem" --key-out "$DIR/tls/server-key.pem"
"$PKID" ca issue-tls "${tls[@]}" --client --cn demo-client --uri "$CLIENT_ID" \
  --out "$DIR/tls/client.pem" --key-out "$DIR/tls/client-key.pem"
"$PKID" ca issue-tls "${tls[@]}" --client --cn intruder --uri "$INTRUDER_ID" \
  --out "$DIR/tls/intruder.pem" --key-out "$DIR/tls/intruder-key.pem"

ensure_identity
write_config
ensure_acme
touch "$DIR/.complete"
echo "setup-demo: ready in $DIR — run: bin/pkid serve --config $DIR/pkid.yaml"
