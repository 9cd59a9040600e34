#!/usr/bin/env bash
# scripts/pg.sh — a throwaway PostgreSQL 15 cluster for tests, `make run` and `make bench`.
#
#   scripts/pg.sh start DIR   initdb into DIR (once) and start the server; prints its conninfo:
#                             host=DIR port=P dbname=postgres user=postgres
#   scripts/pg.sh crash DIR   stop it with `pg_ctl -m immediate` (like a crash); keeps the data, so
#                             `start DIR` brings the same cluster back
#   scripts/pg.sh halt DIR    stop it (`-m fast`) and keep the data (`make run`'s cluster)
#   scripts/pg.sh stop DIR    stop it (`-m fast`) and remove DIR; idempotent (a missing or stopped
#                             cluster is fine)
#   scripts/pg.sh conninfo DIR
#
# DIR must be outside the repository (root's home is not traversable by `postgres`): make it with
# `mktemp -d`. As root, DIR is given to `postgres` and the server binaries run under
# `runuser -u postgres`; as another user they run as that user. The server listens only on a Unix
# socket in DIR (listen_addresses=''), so its port (PG_PORT, default 55432) only names the socket
# and cannot collide with another cluster. fsync is off: for tests, never for durability benchmarks
# (PG_FSYNC=on turns it back on); synchronous_commit stays on, so a crash (`crash`) loses no
# committed transaction.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${PG_PORT:-55432}
FSYNC=${PG_FSYNC:-off}

usage() { echo "usage: $0 start|stop|halt|crash|conninfo DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
DIR=$2
case "$DIR" in /*) ;; *) DIR=$(cd "$(dirname "$DIR")" 2>/dev/null && pwd)/$(basename "$DIR") ;; esac

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

conninfo() { echo "host=$DIR port=$(cat "$DIR/port" 2>/dev/null || echo "$PORT") dbname=postgres user=postgres"; }

running() { [ -f "$DIR/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

case "$cmd" in
start)
    mkdir -p "$DIR"
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
        [ "$(id -u)" -eq 0 ] && chown postgres: "$DIR"
        chmod 700 "$DIR"
        as_pg "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1 ||
            { cat "$DIR/initdb.log" >&2; exit 1; }
        echo "$PORT" | as_pg tee "$DIR/port" >/dev/null
    fi
    if ! running; then
        as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
            -o "-c listen_addresses='' -k $DIR -p $(cat "$DIR/port") -c fsync=$FSYNC -c max_connections=50" \
            start >/dev/null || { tail -20 "$DIR/server.log" >&2; exit 1; }
    fi
    conninfo
    ;;
halt)
    if running; then as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null; fi
    ;;
crash)
    if running; then as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null; fi
    ;;
stop)
    if [ -d "$DIR" ]; then
        if running; then as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null || true; fi
        rm -rf "$DIR"
    fi
    ;;
conninfo) conninfo ;;
*) usage ;;
esac
