#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1, for the aggregator example's
# tests and benchmark (examples/aggregator). Uses Debian's `postgresql`
# package (/usr/lib/postgresql/<version>/bin); nothing is installed or
# registered system-wide, and the system's own clusters are not touched.
#
#   scripts/pg-cluster.sh start STATE     initdb + start + seed; writes STATE
#   scripts/pg-cluster.sh stop STATE      stop and delete (idempotent)
#   scripts/pg-cluster.sh pause STATE     stop the server, keep the data
#   scripts/pg-cluster.sh resume STATE    start it again on the same port
#   scripts/pg-cluster.sh conninfo STATE  print the libpq connection string
#
# STATE is a small shell-syntax file (PG_DIR, PG_PORT, PG_CONNINFO) that the
# tests read. The data lives in a fresh `mktemp -d` directory, the server
# listens on 127.0.0.1 only, on a free port chosen at start (several clusters
# may run at once: ctest -j, the release/asan/tsan builds), and on a unix
# socket inside that directory. Authentication is `trust`, for user
# `spindle`, database `spindle`: it is a test cluster.
#
# PostgreSQL refuses to run as root: as root the server commands run as the
# `postgres` system user (created by the Debian package) through runuser;
# as anyone else they run directly.
set -euo pipefail

cmd=${1:-}
state=${2:-}
if [ -z "$cmd" ] || [ -z "$state" ]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done
  echo "pg-cluster: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
  exit 1
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

read_state() {
  [ -f "$state" ] || return 1
  # shellcheck disable=SC1090
  . "$state"
}

server_start() {  # dir port -> 0 when the server accepts connections
  local dir=$1 port=$2 bin
  bin=$(pg_bin)
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir" start >/dev/null 2>&1
}

case "$cmd" in
  start)
    if read_state 2>/dev/null && [ -d "${PG_DIR:-/nonexistent}" ]; then
      "$0" stop "$state"
    fi
    bin=$(pg_bin)
    dir=$(mktemp -d /tmp/spindle-pg.XXXXXX)
    chmod 755 "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U spindle --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<'EOF'
# throwaway test cluster: speed over durability
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 32MB
log_min_messages = warning
EOF
    # A free port: random in 20000-59999, retried when the bind fails
    # (another cluster or server took it first).
    port=
    for _ in $(seq 1 20); do
      p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
      if server_start "$dir" "$p"; then port=$p; break; fi
    done
    if [ -z "$port" ]; then
      echo "pg-cluster: could not start PostgreSQL; last log lines:" >&2
      tail -20 "$dir/server.log" >&2 || true
      rm -rf "$dir"
      exit 1
    fi
    # From here on a failure must not leave a server running.
    trap 'as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$dir"' ERR
    conninfo="host=127.0.0.1 port=$port dbname=spindle user=spindle connect_timeout=5"
    as_owner "$bin/createdb" -h "$dir" -p "$port" -U spindle spindle
    as_owner "$bin/psql" -h "$dir" -p "$port" -U spindle -d spindle -q -v ON_ERROR_STOP=1 >/dev/null <<'EOF'
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL, city text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users, amount_cents int NOT NULL,
                     placed_on date NOT NULL);
CREATE TABLE follows (follower int NOT NULL REFERENCES users, followee int NOT NULL REFERENCES users,
                      PRIMARY KEY (follower, followee));
INSERT INTO users SELECT i, 'user ' || i, 'user' || i || '@example.com',
                         (ARRAY['Lisbon', 'Oslo', 'Kyoto', 'Quito'])[1 + i % 4]
  FROM generate_series(1, 1000) AS i;
INSERT INTO orders (user_id, amount_cents, placed_on)
  SELECT 1 + (i % 1000), 100 + (i * 37) % 9900, date '2026-01-01' + (i % 300)
  FROM generate_series(1, 10000) AS i;
INSERT INTO follows SELECT i, 1 + (i * k) % 1000 FROM generate_series(1, 1000) AS i,
  generate_series(2, 6) AS k WHERE 1 + (i * k) % 1000 <> i ON CONFLICT DO NOTHING;
CREATE INDEX ON orders (user_id);
ANALYZE;
EOF
    tmp=$(mktemp "$state.XXXXXX")
    printf "PG_DIR='%s'\nPG_PORT='%s'\nPG_CONNINFO='%s'\n" "$dir" "$port" "$conninfo" >"$tmp"
    mv "$tmp" "$state"
    trap - ERR
    echo "pg-cluster: PostgreSQL on 127.0.0.1:$port (data in $dir); $conninfo"
    ;;
  stop)
    read_state 2>/dev/null || { echo "pg-cluster: $state: no cluster (nothing to stop)"; exit 0; }
    if [ -d "${PG_DIR:-}/data" ]; then
      as_owner "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    case "${PG_DIR:-}" in /tmp/spindle-pg.*) rm -rf "$PG_DIR" ;; esac
    rm -f "$state"
    echo "pg-cluster: stopped"
    ;;
  pause)
    read_state || { echo "pg-cluster: $state: no cluster" >&2; exit 1; }
    as_owner "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
    ;;
  resume)
    read_state || { echo "pg-cluster: $state: no cluster" >&2; exit 1; }
    server_start "$PG_DIR" "$PG_PORT" || { tail -20 "$PG_DIR/server.log" >&2; exit 1; }
    ;;
  conninfo)
    read_state || { echo "pg-cluster: $state: no cluster" >&2; exit 1; }
    echo "$PG_CONNINFO"
    ;;
  *)
    echo "pg-cluster: unknown command '$cmd' (start, stop, pause, resume, conninfo)" >&2
    exit 2
    ;;
esac
