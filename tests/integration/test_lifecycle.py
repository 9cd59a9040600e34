#!/usr/bin/python3
"""
Process lifecycle: SIGTERM/SIGINT -> exit code 0 promptly (idle, and with open /events, /voice,
keep-alive RPC and a held DM join); secrets from the environment; the pending join gate reaps a
connection whose client never shows up (--pending-timeout 1s) as one leave.
"""
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import (Voxd, case, expect, finish, snowflake, start_node)  # noqa: E402

PROMPT_S = 5.0


def stop_within(n, sig=signal.SIGTERM):
    os.kill(n.pid(), sig)
    t = time.monotonic()
    try:
        code = n.proc.wait(PROMPT_S)
    except Exception:
        n.stop(timeout=1)  # SIGKILL fallback (by PID)
        raise AssertionError("still running %.0fs after signal %d" % (PROMPT_S, sig))
    el = time.monotonic() - t
    n.stop()  # bookkeeping: already exited
    expect(code == 0, "exit code %s after signal %d (stderr tail: %s)" % (code, sig, n._tail()[-300:]))
    return el


@case("idle node: SIGTERM -> exit 0 promptly")
def _():
    n = start_node(name="idle")
    stop_within(n)


@case("idle node: SIGINT -> exit 0 promptly")
def _():
    n = start_node(name="sigint")
    stop_within(n, signal.SIGINT)


@case("busy node (events client, voice WS identified, keep-alive RPC, held join): SIGTERM -> exit 0")
def _():
    for round_ in range(3):
        n = start_node("--pending-timeout", "600s", name="busy%d" % round_)
        g = snowflake()
        r = n.rpc_ok("voice.connect", {"guild_id": g, "channel_id": snowflake(),
                                       "user_id": snowflake(), "session_id": "s"})
        ev = n.events(after=0)
        ev.take(2)
        vc = n.voice()
        m = vc.identify(r["voice_server"]["token"])
        expect(isinstance(m, dict) and m.get("op") == 2, "identify %r" % (m,))
        idle = socket.create_connection(("127.0.0.1", n.rpc_port))  # a connection that says nothing
        held = {}

        def hold():
            try:
                held["r"] = n.raw_rpc('{"method":"voice.connect","params":{"channel_id":"%s",'
                                      '"user_id":"7","session_id":"h"}}' % snowflake())
            except Exception as e:
                held["r"] = e
        th = threading.Thread(target=hold, daemon=True)
        th.start()
        time.sleep(0.1)  # let the held join reach the node (nothing observable says it is held)
        stop_within(n)
        th.join(5)
        idle.close()
        ev.close()
        vc.close()


@case("secrets from VOXD_RPC_SECRET / VOXD_TOKEN_SECRET work")
def _():
    n = Voxd(env_secrets=True, name="envsecrets").start()
    r = n.rpc_ok("node.status", {})
    expect(r.get("health") == "ok", "status %s" % r)
    st, _ = n.raw_rpc('{"method":"node.status","params":{}}', auth=False)
    expect(st == 401, "no bearer -> %s" % st)
    stop_within(n)


@case("a join whose client never connects is reaped after --pending-timeout 1s: one leave, version 1")
def _():
    n = start_node("--pending-timeout", "1s", name="pending")
    ev = n.events()
    g, c = snowflake(), snowflake()
    r = n.rpc_ok("voice.connect", {"guild_id": g, "channel_id": c, "user_id": snowflake(),
                                   "session_id": "s"})
    cid = r["voice_state"]["connection_id"]
    ev.take(2)
    e = ev.next(6)
    d = e["data"]
    expect(e["event"] == "VOICE_STATE_UPDATE" and d["connection_id"] == cid and
           d["channel_id"] is None and d["version"] == 1, "reap event %s" % e)
    expect(sorted(e["scope"].get("channel_ids", [])) == [c], "reap scope %s" % e["scope"])
    expect(n.rpc_ok("voice.get", {"guild_id": g})["voice_states"] == [], "still listed")
    text, _ = n.metrics_text()
    reaps = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                if l.startswith("voxd_ghost_reaps_total"))
    expect(reaps == 1, "voxd_ghost_reaps_total %s" % reaps)
    ev.close()
    stop_within(n)


finish()
