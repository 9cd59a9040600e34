#!/usr/bin/python3
"""
The media half of the voice WebSocket (docs/protocol.md "Media: the srtp transport"), over real
sockets: Select Protocol -> Session Description (keys, SSRCs, the worker's UDP port), the slot
table (Speaking) and the roster (Client Connect/Disconnect), every refusal's close code, Resume
(Resumed, the state re-sent, 4011 for the socket it replaces, 4006 for a wrong token), the
session ending with 4006 when the RPC removes the connection, a move between channels, and the
transport reap (a WebSocket gone for --transport-reap removes the connection: one leave event).
Audio itself is tested with voxclient (test_media.py).
"""
import base64
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import case, expect, finish, snowflake, start_node, wait_until  # noqa: E402

# --log-level warn: the node must behave the same when its info lines are not formatted
node = start_node("--pending-timeout", "600s", "--transport-reap", "1s", "--log-level", "warn")
G = snowflake()
AES = "AES_CM_128_HMAC_SHA1_80"
GCM = "AEAD_AES_128_GCM"


def join(channel, user=None, modes=(AES,), n=node, session="s"):
    """voice.connect + Identify + Select Protocol; returns (client, ready d, description d,
    voice_state)."""
    user = user or snowflake()
    r = n.rpc_ok("voice.connect", {"guild_id": G, "channel_id": channel, "user_id": user,
                                   "session_id": session})
    vc = n.voice()
    ready = vc.identify(r["voice_server"]["token"])
    expect(isinstance(ready, dict) and ready.get("op") == 2, "identify -> %r" % (ready,))
    vc.send({"op": 1, "d": {"protocol": "srtp", "modes": list(modes)}})
    desc = vc.recv(5)
    expect(isinstance(desc, dict) and desc.get("op") == 4, "select protocol -> %r" % (desc,))
    return vc, ready["d"], desc["d"], r["voice_state"]


def drain(vc, timeout=0.5):
    """Every message that arrives within `timeout` of the previous one."""
    out = []
    while True:
        m = vc.recv(timeout)
        if m is None:
            return out
        out.append(m)
        if isinstance(m, tuple):
            return out


def ops(msgs, op):
    return [m["d"] for m in msgs if isinstance(m, dict) and m.get("op") == op]


def closed(msgs):
    return [m[1] for m in msgs if isinstance(m, tuple)]


@case("Select Protocol srtp -> Session Description with keys, SSRCs and the worker's UDP port")
def _():
    c = snowflake()
    vc, ready, d, vs = join(c)
    try:
        expect(set(d) == {"protocol", "mode", "address", "port", "ssrc", "payload_type",
                          "audio_level_ext_id", "send_key", "recv_key", "slots"},
               "fields %s" % sorted(d))
        expect(d["protocol"] == "srtp" and d["mode"] == AES, "mode %r" % d.get("mode"))
        expect(d["address"] == "127.0.0.1" and 0 < d["port"] < 65536, "address %r" % d)
        sk, rk = base64.b64decode(d["send_key"]), base64.b64decode(d["recv_key"])
        expect(len(sk) == 30 and len(rk) == 30 and sk != rk, "AES_CM keys are 30 bytes, two")
        slots = d["slots"]
        expect([s["slot"] for s in slots] == [0, 1, 2], "three slots %r" % slots)
        ssrcs = [d["ssrc"]] + [s["ssrc"] for s in slots]
        expect(len(set(ssrcs)) == 4 and all(0 < x < 2**32 for x in ssrcs), "ssrcs %r" % ssrcs)
        expect(d["payload_type"] == 111 and d["audio_level_ext_id"] == 1, "pt/ext %r" % d)
        # the UDP port is really bound by the node
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", d["port"]))
            expect(False, "port %d is not bound" % d["port"])
        except OSError:
            pass
        finally:
            s.close()
        rest = drain(vc)
        sp = ops(rest, 5)
        expect(sorted(x["slot"] for x in sp) == [0, 1, 2] and
               all(x["user_id"] is None and x["connection_id"] is None for x in sp),
               "slot table after the description: %r" % rest)
        expect(not closed(rest) and not ops(rest, 12), "alone in the room: %r" % rest)
    finally:
        vc.close()


@case("GCM preferred -> AEAD_AES_128_GCM with 28-byte keys; unknown modes are skipped")
def _():
    vc, _r, d, _vs = join(snowflake(), modes=("XSALSA20_POLY1305", GCM, AES))
    try:
        expect(d["mode"] == GCM, "mode %r" % d["mode"])
        expect(len(base64.b64decode(d["send_key"])) == 28 and
               len(base64.b64decode(d["recv_key"])) == 28, "GCM keys are 28 bytes")
    finally:
        vc.close()


@case("roster: Client Connect both ways; Speaking from the client accepted; leave -> 4006 + "
      "Client Disconnect")
def _():
    c = snowflake()
    ua, ub = snowflake(), snowflake()
    a, _ra, _da, vsa = join(c, ua)
    drain(a)
    b, _rb, _db, vsb = join(c, ub)
    try:
        got_b = drain(b)
        got_a = drain(a)
        expect(ops(got_b, 12) == [{"user_id": ua, "connection_id": vsa["connection_id"]}],
               "newcomer's roster %r" % got_b)
        expect(ops(got_a, 12) == [{"user_id": ub, "connection_id": vsb["connection_id"]}],
               "arrival notice %r" % got_a)
        a.send({"op": 5, "d": {"speaking": True}})
        a.send({"op": 3, "d": 77})
        m = a.recv(5)
        expect(isinstance(m, dict) and m.get("op") == 6 and m.get("d") == 77,
               "still open after Speaking: %r" % (m,))
        node.rpc_ok("voice.disconnect", {"connection_id": vsb["connection_id"]})
        got_b = drain(b, 2)
        expect(closed(got_b) == [4006], "removed connection's socket: %r" % got_b)
        got_a = drain(a)
        expect(ops(got_a, 13) == [{"user_id": ub, "connection_id": vsb["connection_id"]}],
               "departure notice %r" % got_a)
    finally:
        a.close()
        b.close()


def events_of(ev, cid, within):
    """This connection's events on the stream within `within` seconds (until its first one);
    other cases' sockets are reaped meanwhile, so the stream carries theirs too."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        e = ev.recv(within - (time.monotonic() - t0))
        if isinstance(e, dict) and e.get("data", {}).get("connection_id") == cid:
            return [e], time.monotonic() - t0
    return [], time.monotonic() - t0


def faults(msgs, code, what, identify=True):
    r = node.rpc_ok("voice.connect", {"guild_id": G, "channel_id": snowflake(),
                                      "user_id": snowflake(), "session_id": "s"})
    vc = node.voice()
    try:
        if identify:
            vc.identify(r["voice_server"]["token"])
        for m in msgs:
            vc.send(m)
        got = drain(vc, 3)
        expect(closed(got) == [code], "%s: got %r, expected close %d" % (what, got, code))
    finally:
        vc.close()


@case("refusals: 4003 before Identify, 4012 protocol, 4016 modes, 4002 shape, 4005 twice")
def _():
    sel = {"op": 1, "d": {"protocol": "srtp", "modes": [AES]}}
    faults([sel], 4003, "select protocol before identify", identify=False)
    faults([{"op": 1, "d": {"protocol": "udp", "modes": [AES]}}], 4012, "unknown protocol")
    faults([{"op": 1, "d": {"protocol": "srtp", "modes": ["NONE", "xsalsa20_poly1305"]}}], 4016,
           "no supported mode")
    faults([{"op": 1, "d": {"protocol": "srtp"}}], 4002, "modes missing")
    faults([{"op": 1, "d": {"protocol": "srtp", "modes": []}}], 4002, "modes empty")
    faults([{"op": 1, "d": {"protocol": "srtp", "modes": [AES] * 9}}], 4002, "9 modes")
    faults([{"op": 1, "d": {"protocol": "srtp", "modes": [1]}}], 4002, "a mode not a string")
    faults([{"op": 1, "d": {"protocol": "srtp", "modes": [AES], "x": 1}}], 4002, "extra key")
    faults([{"op": 1, "d": "srtp"}], 4002, "d not an object")
    faults([sel, sel], 4005, "select protocol twice")
    faults([{"op": 5, "d": {"speaking": "yes"}}], 4002, "speaking not a boolean")
    faults([{"op": 7, "d": {"connection_id": "x", "session_id": "s", "resume_token": "t"}}],
           4005, "resume after identify")


@case("Resume: Resumed, slot table and roster again; the replaced socket gets 4011; wrong "
      "token or session -> 4006")
def _():
    c = snowflake()
    a, ra, da, vsa = join(c)
    b, _rb, _db, vsb = join(c)
    drain(a)
    drain(b)
    cid = vsa["connection_id"]
    try:
        for bad in ({"connection_id": cid, "session_id": "s", "resume_token": "A" * 22},
                    {"connection_id": cid, "session_id": "other", "resume_token": ra[
                        "resume_token"]},
                    {"connection_id": "nope", "session_id": "s", "resume_token": ra[
                        "resume_token"]}):
            v = node.voice()
            v.send({"op": 7, "d": bad})
            got = drain(v, 3)
            v.close()
            expect(closed(got) == [4006], "bad resume %r -> %r" % (bad, got))
        # the session survived the failed attempts; resume while the old socket is still open
        a2 = node.voice()
        a2.send({"op": 7, "d": {"connection_id": cid, "session_id": "s",
                                "resume_token": ra["resume_token"]}})
        got = drain(a2)
        expect(got and got[0] == {"op": 9, "d": {}}, "resumed: %r" % got)
        expect(sorted(x["slot"] for x in ops(got, 5)) == [0, 1, 2], "slot table %r" % got)
        expect([x["connection_id"] for x in ops(got, 12)] == [vsb["connection_id"]],
               "roster %r" % got)
        old = drain(a, 3)
        expect(closed(old) == [4011], "replaced socket %r" % old)
        # the resumed socket is a full session: heartbeats, and a second Identify is refused
        a2.send({"op": 3, "d": 5})
        m = a2.recv(5)
        expect(isinstance(m, dict) and m.get("op") == 6, "heartbeat ack %r" % (m,))
        # lose it (no close frame) and resume again on a third socket (detached -> attached)
        a2.drop()
        time.sleep(0.2)
        a3 = node.voice()
        a3.send({"op": 7, "d": {"connection_id": cid, "session_id": "s",
                                "resume_token": ra["resume_token"]}})
        got = drain(a3)
        expect(got and got[0] == {"op": 9, "d": {}}, "resume after close: %r" % got)
        # no leave was broadcast: the connection is still there
        st = node.rpc_ok("voice.get", {"guild_id": G, "channel_id": c})["voice_states"]
        expect(cid in [s["connection_id"] for s in st], "connection kept across resumes")
        a3.close()
    finally:
        a.close()
        b.close()


@case("move to another channel: the roster follows (Client Disconnect / Connect), no new grant")
def _():
    c1, c2 = snowflake(), snowflake()
    a, _ra, da, vsa = join(c1)
    b, _rb, _db, vsb = join(c1)
    x, _rx, _dx, vsx = join(c2)
    for v in (a, b, x):
        drain(v)
    try:
        node.rpc_ok("voice.move", {"connection_id": vsa["connection_id"], "channel_id": c2})
        got_a = drain(a)
        got_b = drain(b)
        got_x = drain(x)
        expect(ops(got_b, 13) == [{"user_id": vsa["user_id"],
                                   "connection_id": vsa["connection_id"]}],
               "old room hears the departure %r" % got_b)
        expect([d["connection_id"] for d in ops(got_x, 12)] == [vsa["connection_id"]],
               "new room hears the arrival %r" % got_x)
        expect([d["connection_id"] for d in ops(got_a, 13)] == [vsb["connection_id"]] and
               [d["connection_id"] for d in ops(got_a, 12)] == [vsx["connection_id"]],
               "the mover's roster %r" % got_a)
        desc = ops(got_a, 4)
        expect(all(d["send_key"] == da["send_key"] and d["ssrc"] == da["ssrc"] for d in desc),
               "a re-sent description keeps keys and SSRC: %r" % desc)
        expect(not closed(got_a), "mover stays connected %r" % got_a)
    finally:
        for v in (a, b, x):
            v.close()


@case("transport reap: a socket gone for --transport-reap 1s removes the connection (one leave)")
def _():
    c = snowflake()
    a, _ra, _da, vsa = join(c)
    b, _rb, _db, vsb = join(c)
    drain(a)
    drain(b)
    ev = node.events()
    cid = vsb["connection_id"]
    try:
        b.drop()
        mine, took = events_of(ev, cid, 6)
        expect(len(mine) == 1, "no leave event for the closed connection")
        d = mine[0]["data"]
        expect(mine[0]["event"] == "VOICE_STATE_UPDATE" and d["channel_id"] is None and
               d["version"] == vsb["version"] + 1, "leave event %s" % mine[0])
        expect(0.8 <= took <= 4, "reaped after %.2f s (reap time 1 s)" % took)
        got = drain(a)
        expect([x["connection_id"] for x in ops(got, 13)] == [cid], "roster notice %r" % got)
        wait_until(lambda: any(l.startswith('voxd_ghost_reaps_total{cause="transport"}') and
                               float(l.rsplit(" ", 1)[1]) >= 1
                               for l in node.metrics_text()[0].splitlines()),
                   what="transport reap counted")
        again, _ = events_of(ev, cid, 1.5)
        expect(not again, "a second event for the reaped connection: %r" % (again,))
    finally:
        ev.close()
        a.close()


@case("a client's close frame 1000 is a goodbye (D27): the connection leaves at once, no Resume")
def _():
    c = snowflake()
    a, ra, _da, vsa = join(c)
    b, _rb, _db, vsb = join(c)
    drain(a)
    drain(b)
    ev = node.events()
    cid = vsa["connection_id"]

    def transport_reaps():
        return [float(l.rsplit(" ", 1)[1]) for l in node.metrics_text()[0].splitlines()
                if l.startswith('voxd_ghost_reaps_total{cause="transport"}')]
    reaps_before = transport_reaps()
    try:
        a.close()
        mine, took = events_of(ev, cid, 3)
        expect(len(mine) == 1 and mine[0]["data"]["channel_id"] is None,
               "no leave event after a 1000 close")
        expect(took < 0.8, "left after %.2f s (immediately, not after the 1 s reap)" % took)
        expect(transport_reaps() == reaps_before,
               "a goodbye counted as a ghost reap: %r -> %r" % (reaps_before, transport_reaps()))
        got = drain(b)
        expect([x["connection_id"] for x in ops(got, 13)] == [cid], "roster notice %r" % got)
        v = node.voice()
        v.send({"op": 7, "d": {"connection_id": cid, "session_id": "s",
                               "resume_token": ra["resume_token"]}})
        got = drain(v, 3)
        v.close()
        expect(closed(got) == [4006], "resume after a goodbye -> %r" % got)
    finally:
        ev.close()
        b.close()


@case("/metrics has the media families (sessions, packets, drops, loop lag, latency)")
def _():
    text, _ = node.metrics_text()
    for fam in ("voxd_media_sessions", "voxd_media_packets_total", "voxd_media_bytes_total",
                "voxd_media_drops_total", "voxd_media_loop_lag_seconds",
                "voxd_media_forward_latency_seconds_bucket", "voxd_media_worker_errors_total"):
        expect(fam in text, "%s missing" % fam)
    ev = {}
    for line in text.splitlines():
        if line.startswith("voxd_media_session_events_total{"):
            ev[line.split('event="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    # the cases above: more than ten sessions opened, two resumes, one move, one goodbye
    expect(ev.get("opened", 0) >= 10 and ev.get("resumed", 0) >= 2 and ev.get("moved", 0) >= 1
           and ev.get("left", 0) >= 1, "session events %r" % ev)
    # and not one refused worker command: rooms emptied by leaves and moves were destroyed after
    # their last member left them (a DESTROY_ROOM queued before its REMOVE/MOVE was refused with
    # EBUSY and the room stayed in the worker for good)
    errs = [line for line in text.splitlines() if line.startswith("voxd_media_worker_errors_total")]
    expect(errs and all(float(x.rsplit(" ", 1)[1]) == 0 for x in errs), "worker errors %r" % errs)


finish()
