#!/usr/bin/env bash
# setup-demo-ha.sh DIR — the demo of DESIGN.md §16: two pkid nodes on one
# PostgreSQL database and one token. It builds the ordinary demo fixture
# (setup-demo.sh: the SoftHSM2 token, CAs, mTLS material, DIR/pkid.yaml for
# SQLite) and writes, next to pkid.yaml, one config per node:
#   DIR/node-a.yaml, DIR/node-b.yaml   the same CAs, profiles and token, with
#                                      database: postgres://…, a password
#                                      file, a node name and listeners of
#                                      their own
# It starts nothing and touches no database: run-demo-ha.sh runs a
# throw-away PostgreSQL and both nodes. Idempotent like setup-demo.sh (the
# node configs are rewritten every time).
#
# Environment (defaults in brackets):
#   PKID_DATABASE                the DSN, never with a password
#                                [postgres://pkid@127.0.0.1:5432/pkid?sslmode=disable]
#   PKID_DATABASE_PASSWORD_FILE  the file holding the database password [DIR/pg-password]
#   PKID_NODE_TIMEOUT            nodeTimeout of both nodes [30s]
#   PKID_A_API_ADDR, PKID_A_METRICS_ADDR, PKID_A_PUBLIC_ADDR
#                                node-a's listeners [127.0.0.1:8443, :9464, :8080]
#   PKID_B_API_ADDR, PKID_B_METRICS_ADDR, PKID_B_PUBLIC_ADDR
#                                node-b's listeners [127.0.0.1:8444, :9465, :8081]
#   PKID_BIN                     as for setup-demo.sh
# The issuing CAs name node-a's public listener in every certificate (CRL
# distribution point, caIssuers, OCSP), whichever node issued it: both nodes
# serve the same CRLs and OCSP answers from the database, so in production
# those URLs name one address in front of every node.
set -euo pipefail

DIR=${1:?usage: setup-demo-ha.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
A_API=${PKID_A_API_ADDR:-127.0.0.1:8443}
A_METRICS=${PKID_A_METRICS_ADDR:-127.0.0.1:9464}
A_PUBLIC=${PKID_A_PUBLIC_ADDR:-127.0.0.1:8080}
B_API=${PKID_B_API_ADDR:-127.0.0.1:8444}
B_METRICS=${PKID_B_METRICS_ADDR:-127.0.0.1:9465}
B_PUBLIC=${PKID_B_PUBLIC_ADDR:-127.0.0.1:8081}
DSN=${PKID_DATABASE:-postgres://pkid@127.0.0.1:5432/pkid?sslmode=disable}
PASSWORD_FILE=${PKID_DATABASE_PASSWORD_FILE:-pg-password} # relative: to the config's directory
NODE_TIMEOUT=${PKID_NODE_TIMEOUT:-30s}

case "$DSN" in
  postgres://*:*@* | postgresql://*:*@*)
    echo "setup-demo-ha: PKID_DATABASE must not carry a password; put it in PKID_DATABASE_PASSWORD_FILE" >&2
    exit 1 ;;
  postgres://* | postgresql://*) ;;
  *) echo "setup-demo-ha: PKID_DATABASE must be a postgres:// DSN, not $DSN" >&2; exit 1 ;;
esac
for v in "$A_API" "$A_METRICS" "$A_PUBLIC" "$B_API" "$B_METRICS" "$B_PUBLIC" "$DSN" "$PASSWORD_FILE" "$NODE_TIMEOUT"; do
  case "$v" in *\"* | *\\* | *$'\n'*)
    echo "setup-demo-ha: quotes, backslashes and newlines are not allowed in the settings ($v)" >&2; exit 1 ;;
  esac
done

# node-a's addresses are the fixture's: its certificates name node-a's public listener.
PKID_API_ADDR=$A_API PKID_METRICS_ADDR=$A_METRICS PKID_PUBLIC_ADDR=$A_PUBLIC "$here/setup-demo.sh" "$DIR"
DIR=$(cd "$DIR" && pwd)

# write_node NAME API METRICS PUBLIC: DIR/NAME.yaml from DIR/pkid.yaml.
write_node() {
  local name=$1 tmp="$DIR/.$1.yaml.tmp"
  {
    echo "# pkid node $name of the two-node demo, written by softhsm/setup-demo-ha.sh from"
    echo "# pkid.yaml (the same token, CAs and profiles; its own listeners). Relative paths"
    NODE=$name API=$2 METRICS=$3 PUBLIC=$4 DSN=$DSN PASSWORD_FILE=$PASSWORD_FILE NODE_TIMEOUT=$NODE_TIMEOUT awk '
      /^# pkid demo configuration/ { next }
      /^listen: /        { print "listen: \"" ENVIRON["API"] "\""; n++; next }
      /^metricsListen: / { print "metricsListen: \"" ENVIRON["METRICS"] "\""; n++; next }
      /^publicListen: /  { print "publicListen: \"" ENVIRON["PUBLIC"] "\""; n++; next }
      /^database: / {
        print "# PostgreSQL (DESIGN.md §16): every node shares this database. The password is"
        print "# never in the DSN: databasePasswordFile (0600) or the systemd credential"
        print "# database-password."
        print "database: \"" ENVIRON["DSN"] "\""
        print "databasePasswordFile: \"" ENVIRON["PASSWORD_FILE"] "\""
        print "databaseMaxConns: 10"
        print "# The node name marks every reservation this node makes; at start a node"
        print "# resolves only its own pending rows, and those of a node whose heartbeat"
        print "# stopped more than nodeTimeout ago."
        print "nodeName: " ENVIRON["NODE"]
        print "nodeTimeout: " ENVIRON["NODE_TIMEOUT"]
        n++; next
      }
      { print }
      END { if (n != 4) { print "setup-demo-ha: pkid.yaml lacks listen, metricsListen, publicListen or database" > "/dev/stderr"; exit 1 } }
    ' "$DIR/pkid.yaml"
  } >"$tmp"
  chmod 600 "$tmp"
  mv "$tmp" "$DIR/$name.yaml"
}

write_node node-a "$A_API" "$A_METRICS" "$A_PUBLIC"
write_node node-b "$B_API" "$B_METRICS" "$B_PUBLIC"
echo "setup-demo-ha: wrote $DIR/node-a.yaml (api $A_API, metrics $A_METRICS, public $A_PUBLIC) and"
echo "setup-demo-ha:       $DIR/node-b.yaml (api $B_API, metrics $B_METRICS, public $B_PUBLIC)"
echo "setup-demo-ha: database $DSN, password in $PASSWORD_FILE — run: softhsm/run-demo-ha.sh $DIR"
