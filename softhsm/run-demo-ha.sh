#!/usr/bin/env bash
# run-demo-ha.sh DIR — runs the two-node demo of DESIGN.md §16 in the
# foreground: a throw-away PostgreSQL server of its own under DIR/pg, and
# pkid node-a and node-b on it, both on the one SoftHSM2 token of DIR.
# Ctrl-C (or SIGTERM) stops both nodes, then the server; DIR keeps the
# data for the next run.
#
# The first run initialises DIR/pg (initdb; as root, as the unprivileged
# user postgres, since initdb refuses root), with a random password for the
# superuser postgres and the role pkid in DIR/pg-password (0600), and makes
# the database pkid owned by pkid. Every run starts the server on a free
# port of 127.0.0.1 (and a Unix socket inside DIR/pg only) and writes the
# node configs for that port with setup-demo-ha.sh, which also builds the
# demo fixture if DIR has none. PKID_A_* / PKID_B_* choose the nodes'
# listeners (see setup-demo-ha.sh); PKID_POSTGRES_BIN the server binaries
# (default: the newest /usr/lib/postgresql/*/bin).
set -euo pipefail

DIR=${1:?usage: run-demo-ha.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
PKID=${PKID_BIN:-$here/../bin/pkid}
[ -x "$PKID" ] || { echo "run-demo-ha: $PKID not built (run make build)" >&2; exit 1; }

PGBIN=${PKID_POSTGRES_BIN:-}
if [ -z "$PGBIN" ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n | tail -n1 || true)
fi
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_ctl" ] ||
  { echo "run-demo-ha: PostgreSQL server binaries not found (Debian: apt-get install postgresql, or set PKID_POSTGRES_BIN)" >&2; exit 1; }
command -v psql >/dev/null || PATH=$PGBIN:$PATH

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
PG=$DIR/pg
PWFILE=$DIR/pg-password

# as_pg runs a server program as the server's owner: ourselves, or postgres
# when we are root.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || { echo "run-demo-ha: running as root needs the user postgres (Debian's postgresql package makes it)" >&2; exit 1; }
  as_pg=(runuser -u postgres --)
  if ! "${as_pg[@]}" test -x "$DIR"; then
    echo "run-demo-ha: the user postgres cannot reach $DIR (a directory on the way is closed to it: chmod o+x it, or choose another DIR)" >&2
    exit 1
  fi
fi
pg() { "${as_pg[@]}" "$PGBIN/$1" "${@:2}"; }

if [ ! -f "$PG/data/PG_VERSION" ]; then
  rm -rf "$PG"
  mkdir -p "$PG"
  chmod 700 "$PG"
  (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$PWFILE")
  # initdb reads the password from a file its user can read; it is removed at once.
  cp "$PWFILE" "$PG/pwfile"
  if [ ${#as_pg[@]} -gt 0 ]; then chown -R postgres: "$PG"; fi
  pg initdb -D "$PG/data" -U postgres --pwfile "$PG/pwfile" --auth-local=scram-sha-256 --auth-host=scram-sha-256 \
    -E UTF8 --locale=C >"$PG/initdb.log" 2>&1 || { cat "$PG/initdb.log" >&2; rm -f "$PG/pwfile"; exit 1; }
  rm -f "$PG/pwfile"
fi
[ -s "$PWFILE" ] || { echo "run-demo-ha: $PWFILE is missing; remove $PG to start over" >&2; exit 1; }
chmod 600 "$PWFILE"
PASSWORD=$(cat "$PWFILE")

# port_free PORT: nothing answers on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pids=()
server_up=
stop_all() {
  trap - INT TERM EXIT
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$server_up" ]; then
    echo "run-demo-ha: stopping PostgreSQL" >&2
    pg pg_ctl stop -w -m fast -D "$PG/data" >/dev/null || true
  fi
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# A port free now may be taken before the server binds it: try a few.
for attempt in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 30000))
  port_free "$PORT" || continue
  if pg pg_ctl start -w -t 60 -D "$PG/data" -l "$PG/server.log" \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='$PG'" >/dev/null; then
    server_up=1
    break
  fi
  tail -n 5 "$PG/server.log" >&2
done
[ -n "$server_up" ] || { echo "run-demo-ha: PostgreSQL did not start; see $PG/server.log" >&2; exit 1; }
echo "run-demo-ha: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data in $PG)" >&2

# psql as the superuser over TCP; the password never reaches a command line.
sql() { PGPASSWORD=$PASSWORD psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc "$1"; }
if [ "$(sql "SELECT 1 FROM pg_roles WHERE rolname = 'pkid'")" != 1 ]; then
  # The statement with the password goes in on stdin, not in psql's arguments.
  PGPASSWORD=$PASSWORD psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -f - >/dev/null \
    <<<"CREATE ROLE pkid LOGIN PASSWORD '$PASSWORD';"
fi
if [ "$(sql "SELECT 1 FROM pg_database WHERE datname = 'pkid'")" != 1 ]; then
  sql "CREATE DATABASE pkid OWNER pkid" >/dev/null
fi

PKID_BIN=$PKID PKID_DATABASE="postgres://pkid@127.0.0.1:$PORT/pkid?sslmode=disable" PKID_DATABASE_PASSWORD_FILE=$PWFILE \
  "$here/setup-demo-ha.sh" "$DIR" >&2

api() { sed -n 's/^listen: "\(.*\)"$/\1/p' "$DIR/$1.yaml"; }
# listening ADDR PID: waits until ADDR takes connections, false if PID dies
# first (or after a minute).
listening() {
  local i
  for i in $(seq 1 600); do
    (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# One node after the other: SoftHSM2 (2.6.1) can fail one of two processes
# that open the same token at the same instant (CKR_GENERAL_ERROR); once a
# node listens, it is done with opening. Each node's output is prefixed
# with its name; $! is pkid itself.
for node in node-a node-b; do
  "$PKID" serve --config "$DIR/$node.yaml" > >(sed -u "s/^/[$node] /") 2>&1 &
  pids+=($!)
  listening "$(api "$node")" "$!" || { echo "run-demo-ha: $node did not start" >&2; exit 1; }
done
cat >&2 <<EOF
run-demo-ha: node-a (https://$(api node-a)) and node-b (https://$(api node-b)) are serving,
run-demo-ha: on one database and one token ($DIR/tokens). Issue from either, e.g. node-b:
  curl --cacert $DIR/tls/ca.pem --cert $DIR/tls/client.pem --key $DIR/tls/client-key.pem \\
    -H 'Content-Type: application/json' https://$(api node-b)/api/v3/pki/certificates/issue-certificate \\
    -d '{"profileId":"13646ca2-2a8e-4d37-aa4e-641fc7771122","commonName":"a.prod.example.internal","ttl":"1h",
         "signatureAlgorithm":"ECDSA-SHA256","keyAlgorithm":"EC_prime256v1"}'
run-demo-ha: bin/pkid records list --config $DIR/node-a.yaml (or node-b.yaml) shows what both issued.
run-demo-ha: Ctrl-C stops both nodes and the server.
EOF
# Until Ctrl-C, or until a node stops on its own (then the rest stops too).
set +e
wait -n "${pids[@]}"
status=$?
set -e
echo "run-demo-ha: a node stopped (exit $status); stopping the other one and the server" >&2
exit "$status"
