#!/usr/bin/env bash
# scripts/bench.sh — RPC benchmarks of voxd (make bench). Figures are printed, never pass/fail.
#
# Starts one voxd on free loopback ports (secrets in a temp dir, pending-timeout long enough that
# no benchmark connection is reaped), runs tests/bench/rpc_bench in both modes (update, churn) at a
# few concurrencies for a few seconds each, prints the table and the node's CPU time per run
# (from /proc/PID/stat), then stops voxd by its PID. Then the webrtc transport's figures
# (dtls_bench, wrtc_fwd_bench; BENCH_WEBRTC=0 skips them). Then the durable signalling benchmark
# (scripts/bench_pg.sh: voxd --db vs pgbench on a throwaway fsync-on cluster, DURATION_PG seconds
# per row; BENCH_PG=0 skips it). Then the relay benchmark (scripts/bench-relay.sh; BENCH_RELAY=0
# skips it). Bounded: under 6 minutes with the defaults.
#
#   BUILD=build DURATION=3 CONCURRENCY="1 8 32" CONNS=1000 DURATION_PG=10 ./scripts/bench.sh
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DURATION=${DURATION:-3}
CONCURRENCY=${CONCURRENCY:-1 8 32}
CONNS=${CONNS:-1000}
VOXD="$BUILD/voxd"
BENCH="$BUILD/tests/bench/rpc_bench"

for f in "$VOXD" "$BENCH"; do
    [ -x "$f" ] || { echo "bench: $f is missing (run make)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/voxd-bench.XXXXXX)
VOXD_PID=
cleanup() {
    if [ -n "$VOXD_PID" ] && kill -0 "$VOXD_PID" 2>/dev/null; then
        kill -TERM "$VOXD_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$VOXD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$VOXD_PID" 2>/dev/null && kill -KILL "$VOXD_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CPU seconds (user+system) of a PID so far
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

echo "== machine"
echo "cpu:    $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
echo "nproc:  $(nproc)"
echo "kernel: $(uname -sr)"
echo "voxd:   $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($VOXD, ${OPT:-default} build)"
echo "note:   the load generator runs on the same machine and shares its cores with voxd"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/rpc.secret"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/token.secret"
chmod 600 "$TMP"/*.secret

RPC_PORT=$(free_port)
VOICE_PORT=$(free_port)
"$VOXD" --rpc-listen "127.0.0.1:$RPC_PORT" --voice-listen "127.0.0.1:$VOICE_PORT" \
    --rpc-secret-file "$TMP/rpc.secret" --token-secret-file "$TMP/token.secret" \
    --node-id bench --log-level warn --pending-timeout 3600s --events-retention 100000 \
    >"$TMP/voxd.log" 2>&1 &
VOXD_PID=$!

for _ in $(seq 100); do
    if curl -fsS "http://127.0.0.1:$RPC_PORT/healthz" >/dev/null 2>&1; then break; fi
    kill -0 "$VOXD_PID" 2>/dev/null || { echo "bench: voxd exited:"; cat "$TMP/voxd.log"; exit 1; }
    sleep 0.05
done
curl -fsS "http://127.0.0.1:$RPC_PORT/healthz" >/dev/null || { echo "bench: voxd not healthy"; exit 1; }

echo
echo "== /rpc over HTTP/1.1 keep-alive, one request in flight per client, ${DURATION}s per row"
echo "   update: voice.update toggling self_mute over $CONNS pre-created connections"
echo "   churn:  voice.connect then voice.disconnect, repeatedly (each counted)"
echo
header=--header
for mode in update churn; do
    for c in $CONCURRENCY; do
        before=$(cpu_s "$VOXD_PID")
        t0=$(date +%s.%N)
        row=$("$BENCH" --port "$RPC_PORT" --secret-file "$TMP/rpc.secret" --mode "$mode" \
            --clients "$c" --duration "$DURATION" --conns "$CONNS" $header) || \
            echo "   (rpc_bench exited non-zero for $mode/$c)"
        t1=$(date +%s.%N)
        after=$(cpu_s "$VOXD_PID")
        if [ -n "$header" ]; then
            echo "$row" | head -n1 | sed 's/$/   voxd_cpu_s  wall_s/'
            row=$(echo "$row" | tail -n1)
            header=
        fi
        # in-memory update figures, printed again beside the durable ones (bench_pg.sh)
        [ "$mode" = update ] && echo "$row" | awk '{ print $2, $6, $7, $8 }' >>"$TMP/inmem.txt"
        printf '%s   %10s  %6s\n' "$row" "$(awk -v a="$after" -v b="$before" 'BEGIN{printf "%.2f", a-b}')" \
            "$(awk -v a="$t1" -v b="$t0" 'BEGIN{printf "%.1f", a-b}')"
    done
done

echo
echo "== voxd after the runs"
echo "cpu_s total: $(cpu_s "$VOXD_PID")   rss_kb: $(awk '/VmRSS/ {print $2}' "/proc/$VOXD_PID/status")"
curl -fsS -H "Authorization: Bearer $(cat "$TMP/rpc.secret")" \
    "http://127.0.0.1:$RPC_PORT/rpc" -d '{"method":"node.status","params":{}}' | head -c 400
echo

kill -TERM "$VOXD_PID"
code=0
for _ in $(seq 100); do kill -0 "$VOXD_PID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$VOXD_PID" 2>/dev/null; then
    echo "voxd did not exit within 5s of SIGTERM; killing it"
    kill -KILL "$VOXD_PID"
fi
wait "$VOXD_PID" || code=$?
VOXD_PID=
echo "voxd exit code after SIGTERM: $code"

# webrtc transport (issue 5; BENCH_WEBRTC=0 skips it, about 15 s): DTLS-SRTP handshakes per server
# CPU-second on one core (tests/bench/dtls_bench), and the media worker's CPU per forwarded packet
# with webrtc participants brought up for real (STUN, DTLS) against srtp ones
# (tests/bench/wrtc_fwd_bench). Both single-threaded, in-process, no voxd.
if [ "${BENCH_WEBRTC:-1}" != 0 ]; then
    echo
    echo "== webrtc: DTLS-SRTP handshakes per second on one core (server and client in one thread;"
    echo "   the last column counts the server's CPU only: the node's cost per browser joining)"
    "$BUILD/tests/bench/dtls_bench" "${DURATION_DTLS:-1}"
    echo
    echo "== webrtc vs srtp: media worker CPU per forwarded packet (rtp_worker_inject, one speaker,"
    echo "   two listeners, one sendmmsg per injected packet; ${DURATION_FWD:-1}s of CPU per case)"
    "$BUILD/tests/bench/wrtc_fwd_bench" "${DURATION_FWD:-1}"
fi

if [ "${BENCH_PG:-1}" != 0 ]; then
    BUILD="$BUILD" CONCURRENCY="$CONCURRENCY" CONNS="$CONNS" INMEM_FILE="$TMP/inmem.txt" \
        ./scripts/bench_pg.sh
fi

# Relay benchmark (scripts/bench-relay.sh: voxd's media worker, the ceiling relay and rtpengine
# driven by relay_gen on loopback; BENCH_RELAY=0 skips it). About 2–3 minutes with the defaults.
if [ "${BENCH_RELAY:-1}" != 0 ]; then
    BUILD="$BUILD" ./scripts/bench-relay.sh
fi
