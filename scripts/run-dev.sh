#!/bin/sh
# scripts/run-dev.sh — run a development voxd (used by `make run`, which sets BUILD).
# Creates .run/ in the repo (gitignored) with dev secret files generated once, prints how to
# call the node, then execs it in the foreground (Ctrl-C stops it cleanly).
set -eu
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
RPC_LISTEN=${VOXD_RPC_LISTEN:-127.0.0.1:8700}
VOICE_LISTEN=${VOXD_VOICE_LISTEN:-127.0.0.1:8701}
cat <<MSG
voxd (dev) — RPC on http://$RPC_LISTEN, voice WebSocket on ws://$VOICE_LISTEN/voice
  secrets:  $RUN/rpc-secret, $RUN/token-secret
  try:      curl -s -H "Authorization: Bearer \$(cat $RUN/rpc-secret)" \\
                 -d '{"method":"node.status","params":{}}' http://$RPC_LISTEN/rpc
            curl -s http://$RPC_LISTEN/metrics
MSG
exec "$BUILD/voxd" --dev --rpc-listen "$RPC_LISTEN" --voice-listen "$VOICE_LISTEN" \
    --rpc-secret-file "$RUN/rpc-secret" --token-secret-file "$RUN/token-secret" "$@"
