#!/usr/bin/python3
"""
The voice WebSocket (/voice) and its grant tokens: Hello, Identify -> Ready, and the close code of
every refusal (4004 malformed/bad signature, 4021 expired, 4022 replayed, 4023 wrong node/room/user,
4024 connection gone). Expiry uses a second node started with --grant-ttl 1s.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import (b64url, case, expect, finish, jwt_claims, jwt_sign, snowflake,  # noqa: E402
                    start_node, wait_until)

node = start_node("--pending-timeout", "600s")
G = snowflake()


def grant(n=node, guild=G, channel=None, user=None, session=None):
    r = n.rpc_ok("voice.connect", {"guild_id": guild, "channel_id": channel or snowflake(),
                                   "user_id": user or snowflake(), "session_id": session or "s"})
    return r["voice_server"]["token"], r["voice_state"]


def identify(token, n=node):
    vc = n.voice()
    h = vc.hello
    try:
        return h, vc.identify(token)
    finally:
        vc.close()


def closed_with(token, code, what, n=node):
    _h, m = identify(token, n)
    expect(isinstance(m, tuple) and m[0] == "close" and m[1] == code,
           "%s: got %r, expected close %d" % (what, m, code))


@case("Hello (op 8, heartbeat_interval) then Identify with a fresh grant -> Ready (op 2)")
def _():
    tok, vs = grant()
    h, m = identify(tok)
    expect(isinstance(h, dict) and h.get("op") == 8 and
           isinstance(h.get("d", {}).get("heartbeat_interval"), int) and
           h["d"]["heartbeat_interval"] > 0, "hello %r" % (h,))
    expect(isinstance(m, dict) and m.get("op") == 2, "identify -> %r" % (m,))


@case("the same token twice (replay after a successful Identify) -> close 4022")
def _():
    tok, _ = grant()
    _h, m = identify(tok)
    expect(isinstance(m, dict) and m.get("op") == 2, "first identify -> %r" % (m,))
    closed_with(tok, 4022, "replayed token")


@case("bad signature (one signature character changed; signed with another secret) -> close 4004")
def _():
    tok, _ = grant()
    h, c, s = tok.split(".")
    mid = len(s) // 2
    s2 = s[:mid] + ("A" if s[mid] != "A" else "B") + s[mid + 1:]
    closed_with("%s.%s.%s" % (h, c, s2), 4004, "tampered signature")
    closed_with(jwt_sign(jwt_claims(tok), secret="another-secret-0123456789abcdef"), 4004,
                "signed with another secret")
    # claims changed under the original signature
    cl = jwt_claims(tok)
    cl["exp"] = cl.get("exp", 0) + 3600
    forged = h + "." + b64url(__import__("json").dumps(cl).encode()) + "." + s
    closed_with(forged, 4004, "claims changed, signature kept")
    # the untouched token still works: refusals did not consume it
    _h, m = identify(tok)
    expect(isinstance(m, dict) and m.get("op") == 2, "original after refusals -> %r" % (m,))


@case("malformed tokens -> close 4004")
def _():
    tok, _ = grant()
    h, c, s = tok.split(".")
    none_hdr = b64url(b'{"alg":"none","typ":"JWT"}')
    for bad, what in [("", "empty"), ("abc", "one word"), ("a.b", "two parts"),
                      ("a.b.c", "garbage parts"), (h + "." + c, "no signature"),
                      (h + "." + c + "." + s + ".x", "four parts"),
                      (none_hdr + "." + c + ".", "alg none"),
                      (jwt_sign(jwt_claims(tok), header=none_hdr), "alg none, signed"),
                      ("x" * 3000, "3000 bytes")]:
        closed_with(bad, 4004, "malformed (%s)" % what)


@case("a token for another node, room or user (validly signed) -> close 4023")
def _():
    tok, vs = grant()
    cl = jwt_claims(tok)
    expect("node" in cl and "room" in cl and "sub" in cl, "claims %s" % sorted(cl))
    for key, val in (("node", "some-other-node"), ("room", "guild:%s:%s" % (G, snowflake())),
                     ("sub", snowflake())):
        c2 = dict(cl)
        c2[key] = val
        closed_with(jwt_sign(c2), 4023, "%s changed" % key)
    _h, m = identify(tok)
    expect(isinstance(m, dict) and m.get("op") == 2, "original after the forgeries -> %r" % (m,))


@case("a token whose connection was disconnected -> close 4024")
def _():
    tok, vs = grant()
    node.rpc_ok("voice.disconnect", {"connection_id": vs["connection_id"]})
    closed_with(tok, 4024, "connection gone")


@case("Identify without a token / before Identify: the connection is refused with a close code")
def _():
    vc = node.voice()
    vc.send({"op": 0, "d": {}})
    m = vc.recv(5)
    vc.close()
    expect(isinstance(m, tuple) and m[0] == "close" and m[1] == 4004, "identify without token %r" % (m,))


@case("Ready carries exactly connection_id, user_id, session_id of the grant and a resume token")
def _():
    u = snowflake()
    tok, vs = grant(user=u, session="ready-sess")
    _h, m = identify(tok)
    d = dict(m.get("d") or {}) if isinstance(m, dict) else {}
    rt = d.pop("resume_token", None)
    expect(isinstance(m, dict) and m.get("op") == 2 and d == {
        "connection_id": vs["connection_id"], "user_id": u, "session_id": "ready-sess"},
        "ready %r" % (m,))
    expect(isinstance(rt, str) and len(rt) == 22 and all(
        c.isalnum() or c in "-_" for c in rt), "resume_token %r (22 base64url characters)" % (rt,))


@case("Heartbeat -> Heartbeat ACK echoing d, before and after Identify")
def _():
    tok, _ = grant()
    vc = node.voice()
    try:
        vc.send({"op": 3, "d": 1234})
        m = vc.recv(5)
        expect(m == {"op": 6, "d": 1234}, "ack before identify %r" % (m,))
        m = vc.identify(tok)
        expect(isinstance(m, dict) and m.get("op") == 2, "identify %r" % (m,))
        vc.send({"op": 3, "d": {"nonce": "x"}})
        m = vc.recv(5)
        expect(m == {"op": 6, "d": {"nonce": "x"}}, "ack after identify %r" % (m,))
    finally:
        vc.close()


def close_after(msgs, code, what, identify_first=False):
    vc = node.voice()
    try:
        if identify_first:
            m = vc.identify(grant()[0])
            expect(isinstance(m, dict) and m.get("op") == 2, "%s: identify %r" % (what, m))
        for x in msgs:
            vc.send(x)
        m = vc.recv(5)
        expect(isinstance(m, tuple) and m[0] == "close" and m[1] == code,
               "%s: got %r, expected close %d" % (what, m, code))
    finally:
        vc.close()


@case("protocol faults get their close codes (4001, 4002, 4003, 4005)")
def _():
    close_after(["not json"], 4002, "not JSON")
    close_after(['{"op":3,"op":3,"d":1}'], 4002, "duplicate key")
    close_after(['{"op":3,"d":1,"x":2}'], 4002, "extra top-level key")
    close_after(['{"op":"3","d":1}'], 4002, "op not an integer")
    close_after(['{"op":3,"d":"%s"}' % ("x" * 17000)], 4002, "17 KB message")
    close_after([{"op": 5, "d": {}}], 4003, "Speaking before Identify")
    close_after([{"op": 42, "d": {}}], 4001, "unknown op after Identify", identify_first=True)
    close_after([{"op": 0, "d": {"token": "x"}}], 4005, "second Identify", identify_first=True)


@case("no heartbeat for 2x --heartbeat-interval 1s -> close 4009; heartbeats keep it open")
def _():
    n3 = start_node("--heartbeat-interval", "1s", name="voxd-hb")
    vc = n3.voice()
    expect(vc.hello.get("d", {}).get("heartbeat_interval") == 1000, "hello %r" % (vc.hello,))
    m = vc.recv(6)  # bounded read: the close is the next thing that arrives
    expect(isinstance(m, tuple) and m[0] == "close" and m[1] == 4009, "silent client got %r" % (m,))
    vc.close()
    vc = n3.voice()
    t_end = time.monotonic() + 3.5
    while time.monotonic() < t_end:  # heartbeat every 0.5 s for 3.5 s (> 2 x interval)
        vc.send({"op": 3, "d": 1})
        m = vc.recv(2)
        expect(m == {"op": 6, "d": 1}, "heartbeat answered with %r" % (m,))
        time.sleep(0.5)
    vc.close()
    n3.stop(report=True)


@case("the voice listener: other paths 404 NOT_FOUND, upgrade to another path refused")
def _():
    import http.client
    import websocket
    c = http.client.HTTPConnection("127.0.0.1", node.voice_port, timeout=5)
    c.request("GET", "/nope")
    r = c.getresponse()
    body = r.read()
    c.close()
    expect(r.status == 404 and b"NOT_FOUND" in body, "GET /nope -> %s %r" % (r.status, body[:200]))
    try:
        ws = websocket.create_connection("ws://127.0.0.1:%d/other" % node.voice_port, timeout=5)
    except (websocket.WebSocketException, ConnectionError):
        return
    ws.close()
    expect(False, "WebSocket upgrade to /other accepted")


@case("an expired token (--grant-ttl 1s) -> close 4021")
def _():
    n2 = start_node("--grant-ttl", "1s", "--pending-timeout", "600s", name="voxd-ttl")
    tok, _ = grant(n2)
    exp = jwt_claims(tok)["exp"]
    expect(exp - time.time() < 3, "exp %s is more than 1s (+rounding) ahead" % exp)
    # the expiry is a timer of the token itself: wait for the wall clock to pass it (bounded)
    wait_until(lambda: time.time() > exp + 0.2, timeout=5, interval=0.05, what="token expiry")
    closed_with(tok, 4021, "expired token", n=n2)
    n2.stop(report=True)


@case("token failures are counted by reason in /metrics")
def _():
    text, _ = node.metrics_text()
    got = {}
    for line in text.splitlines():
        if line.startswith("voxd_token_failures_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0] if 'reason="' in line else "?"
            got[reason] = float(line.rsplit(" ", 1)[1])
    for reason, least in (("malformed", 5), ("signature", 3), ("replayed", 1), ("connection", 1)):
        expect(got.get(reason, 0) >= least, "voxd_token_failures_total %s: %s" % (reason, got))
    expect(got.get("node", 0) + got.get("mismatch", 0) >= 3, "node/mismatch: %s" % got)


finish()
