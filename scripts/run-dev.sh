#!/usr/bin/env bash
# scripts/run-dev.sh — run a development voxd on a local PostgreSQL of its own (used by
# `make run`, which sets BUILD).
#
# The cluster lives outside the repository (VOXD_DEV_PG, default /var/tmp/voxd-dev-pg) so that
# state survives restarts of the node, listens only on a Unix socket in that folder, and is stopped
# (data kept) when the node exits. Secrets are generated once into .run/ (gitignored).
# A user with their own Postgres sets VOXD_DB to its connection string instead.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUN=.run
mkdir -p "$RUN"
chmod 700 "$RUN"
for name in rpc-secret token-secret; do
    if [ ! -s "$RUN/$name" ]; then
        (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN/$name")
        echo >> "$RUN/$name"
    fi
done

PGDIR=${VOXD_DEV_PG:-/var/tmp/voxd-dev-pg}
own_pg=0
if [ -z "${VOXD_DB:-}" ]; then
    # fsync stays on: this is the node's real state, not a test
    VOXD_DB=$(PG_FSYNC=on PG_PORT=${VOXD_DEV_PG_PORT:-55499} ./scripts/pg.sh start "$PGDIR")
    export VOXD_DB
    own_pg=1
fi

RPC_LISTEN=${VOXD_RPC_LISTEN:-127.0.0.1:8700}
VOICE_LISTEN=${VOXD_VOICE_LISTEN:-127.0.0.1:8701}
cat <<MSG
voxd (dev) — RPC on http://$RPC_LISTEN, voice WebSocket on ws://$VOICE_LISTEN/voice
  demo:     open http://$VOICE_LISTEN/ in two browser tabs, pick two names and one channel
  database: $VOXD_DB$([ $own_pg = 1 ] && echo " (local cluster in $PGDIR, stopped when voxd exits)")
  secrets:  $RUN/rpc-secret, $RUN/token-secret
  try:      curl -s -H "Authorization: Bearer \$(cat $RUN/rpc-secret)" \\
                 -d '{"method":"node.status","params":{}}' http://$RPC_LISTEN/rpc
            curl -s http://$RPC_LISTEN/metrics
MSG

"$BUILD/voxd" --dev --web-root web --rpc-listen "$RPC_LISTEN" --voice-listen "$VOICE_LISTEN" \
    --rpc-secret-file "$RUN/rpc-secret" --token-secret-file "$RUN/token-secret" "$@" &
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null || true; }
trap stop INT TERM
status=0
wait "$pid" || status=$?
# a signal interrupts the first wait; wait again for the node to finish its shutdown
if kill -0 "$pid" 2>/dev/null; then wait "$pid" || status=$?; fi
if [ $own_pg = 1 ]; then ./scripts/pg.sh halt "$PGDIR" || true; fi
exit $status
