#!/usr/bin/python3
"""
The voxclient binary as a user and a test drive it: --help, usage errors, a grant obtained over
the real node's RPC (voice.connect) and the voice WebSocket's Ready, a refused token reported with
its close code, a node that never answers the handshake (given up after lws' 5 s, or at once on
SIGTERM); and the media path end to end against tests/integration/fakenode.py (a stand-in
node that forwards SRTP untouched between two paired clients): each client hears the other's tone
by decoded audio, attributed to the speaker Speaking named, follows a re-sent Session Description
to another port, reports a close from the node with exit status 1, and a SIGTERM with its report
and exit status 0. The real node's media path is tests/integration/test_media.py.
"""
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakenode import FakeNode  # noqa: E402
from voxlib import (RPC_SECRET, VoxClient, case, expect, finish, snowflake,  # noqa: E402
                    start_node, wait_until)

node = start_node()
secret_file = os.path.join(node.tmp, "vc-rpc.secret")
with open(secret_file, "w") as f:
    f.write(RPC_SECRET + "\n")


@case("--help lists every option with its default and exits 0")
def _():
    c = VoxClient("--help")
    rc, _ = c.wait()
    expect(rc == 0, "exit %r" % rc)
    for opt in ("--token", "--endpoint", "--rpc", "--rpc-secret-file", "--guild", "--channel",
                "--user", "--session", "--mode", "--freq", "--silent", "--duration", "--resume",
                "default 440", "default aes_cm", "default 10"):
        expect(opt in c.out, "%s missing from --help" % opt)


@case("no grant, both grants, or a bad value -> usage on stderr, exit 2, no report")
def _():
    for args in ((), ("--token", "t"), ("--token", "t", "--endpoint", "127.0.0.1:1", "--rpc",
                                        "http://127.0.0.1:1", "--rpc-secret-file", secret_file,
                                        "--channel", "1", "--user", "2", "--session", "s"),
                 ("--token", "t", "--endpoint", "127.0.0.1:1", "--mode", "rot13"),
                 ("--token", "t", "--endpoint", "127.0.0.1:1", "--freq", "abc")):
        c = VoxClient(*args)
        rc, rep = c.wait()
        expect(rc == 2 and rep is None and "usage:" in c.err, "%r: exit %r out %r" % (
            args, rc, c.out[:200]))


@case("--rpc: voice.connect over HTTP gives the grant; Ready, then a Session Description; exit 0")
def _():
    g, ch, u = snowflake(), snowflake(), snowflake()
    c = VoxClient("--rpc", "http://127.0.0.1:%d" % node.rpc_port, "--rpc-secret-file",
                  secret_file, "--guild", g, "--channel", ch, "--user", u, "--session", "s1",
                  "--duration", "1")
    rc, rep = c.wait()
    expect(rep is not None, "no JSON report; stderr %r" % c.err[-300:])
    evs = [e["ev"] for e in rep["events"]]
    expect(any(e.startswith("grant endpoint=127.0.0.1:%d" % node.voice_port) for e in evs),
           "events %r" % evs)
    expect(rep["user_id"] == u and isinstance(rep["connection_id"], str) and
           len(rep["connection_id"]) == 22, "report %r" % rep)
    expect(rc == 0 and rep["close"] is None, "exit %r close %r" % (rc, rep["close"]))
    expect(any(e.startswith("session_description mode=AES_CM_128_HMAC_SHA1_80") for e in evs),
           "events %r" % evs)


@case("a refused token -> the node's close code and reason in the report, exit 1")
def _():
    c = VoxClient("--token", "not-a-token", "--endpoint", "127.0.0.1:%d" % node.voice_port,
                  "--duration", "5")
    rc, rep = c.wait()
    expect(rc == 1 and rep and rep["close"] == {
        "code": 4004, "reason": "authentication failed: malformed token"},
        "exit %r report %r" % (rc, rep))
    expect(rep["connection_id"] is None and rep["sent"] == 0, "report %r" % rep)


@case("nothing listening at the endpoint -> close code 0 with the reason, exit 1")
def _():
    fk = FakeNode()
    ep = fk.endpoint
    fk.stop()
    rc, rep = VoxClient("--token", "user:1", "--endpoint", ep, "--duration", "5").wait()
    expect(rc == 1 and rep and rep["close"]["code"] == 0 and rep["close"]["reason"],
           "exit %r report %r" % (rc, rep))


@case("a node that accepts and never answers the handshake: lws gives up after 5 s (close code 0, "
      "exit 1); SIGTERM meanwhile ends the run at once (exit 0)")
def _():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ep = "127.0.0.1:%d" % ls.getsockname()[1]
    held = []
    try:
        t0 = time.monotonic()
        c = VoxClient("--token", "user:1", "--endpoint", ep, "--duration", "0", "--no-progress")
        held.append(ls.accept()[0])
        rc, rep = c.wait(15)
        took = time.monotonic() - t0
        expect(rc == 1 and rep and rep["close"]["code"] == 0 and
               "closed before the handshake completed" in rep["close"]["reason"],
               "exit %r report %r" % (rc, rep))
        expect(took < 5 + 3, "gave up after %.1f s (lws' handshake timeout is 5 s)" % took)
        c = VoxClient("--token", "user:1", "--endpoint", ep, "--duration", "0", "--no-progress")
        held.append(ls.accept()[0])
        t0 = time.monotonic()
        c.signal(signal.SIGTERM)
        rc, rep = c.wait(15)
        took = time.monotonic() - t0
        expect(rc == 0 and rep and rep["close"] is None, "after SIGTERM: exit %r report %r" % (
            rc, rep))
        expect(took < 2, "SIGTERM during the handshake: the run ended %.1f s later" % took)
    finally:
        for x in held + [ls]:
            x.close()


def pair(fk, f1, f2, dur, *extra):
    a = VoxClient("--token", "user:101", "--endpoint", fk.endpoint, "--freq", f1,
                  "--duration", dur, *extra)
    b = VoxClient("--token", "user:102", "--endpoint", fk.endpoint, "--freq", f2,
                  "--duration", dur, *extra)
    return a, b


def hears(rep, freq, speaker, what):
    s0 = rep["slots"][0]
    expect(s0["freq_hz"] is not None and abs(s0["freq_hz"] - freq) < 3 and s0["ratio"] > 0.5,
           "%s: slot 0 heard %r Hz (ratio %r), expected %d" % (what, s0["freq_hz"], s0["ratio"],
                                                                 freq))
    expect(s0["packets"] >= 50 and s0["lost"] == 0 and s0["latency_ms"]["p50"] < 50,
           "%s: slot 0 %r" % (what, s0))
    sp = rep["speakers"].get(speaker)
    # a packet may beat the Speaking that names its speaker (UDP vs the WebSocket): unattributed
    expect(sp and abs(sp["freq_hz"] - freq) < 3 and s0["packets"] - 5 <= sp["packets"] <=
           s0["packets"],
           "%s: speakers %r" % (what, rep["speakers"]))
    expect(rep["slots"][1]["packets"] == 0 and rep["slots"][1]["freq_hz"] is None,
           "%s: slot 1 %r" % (what, rep["slots"][1]))


@case("fake node: two clients at 440 and 880 Hz each hear the other (AES_CM), exit 0")
def _():
    fk = FakeNode()
    a, b = pair(fk, 440, 880, 3)
    (ra, pa), (rb, pb) = a.wait(), b.wait()
    fk.stop()
    expect(ra == 0 and rb == 0, "exit %r %r; %r %r" % (ra, rb, a.err[-200:], b.err[-200:]))
    hears(pa, 880, "102", "client 101")
    hears(pb, 440, "101", "client 102")
    expect(pa["roster"] == ["102"] and pb["roster"] == ["101"], "rosters %r %r" % (
        pa["roster"], pb["roster"]))
    expect(pa["close"] is None and 140 <= pa["sent"] <= 160, "report %r" % pa)
    expect(any(e["ev"] == "speaking slot=0 user_id=102" for e in pa["events"]),
           "events %r" % pa["events"])
    expect("voxclient 101 t=1s" in a.err, "no progress line: %r" % a.err[:300])
    c = fk.conn("101")
    ops = [op for op, _ in c.received]
    expect(ops[0] == 0 and ops.count(1) == 1 and 3 in ops and 5 in ops,
           "ops from the client %r" % ops)  # Identify first, one Select Protocol, heartbeats
    sel = dict(c.received)[1]
    expect(sel == {"protocol": "srtp", "modes": ["AES_CM_128_HMAC_SHA1_80"]}, "select %r" % sel)


@case("fake node: --mode gcm asks for AEAD_AES_128_GCM and works")
def _():
    fk = FakeNode()
    a, b = pair(fk, 500, 700, 2, "--mode", "gcm")
    (ra, pa), (rb, pb) = a.wait(), b.wait()
    fk.stop()
    expect(ra == 0 and rb == 0, "exit %r %r" % (ra, rb))
    expect(dict(fk.conn("101").received)[1]["modes"] == ["AEAD_AES_128_GCM"], "modes")
    hears(pa, 700, "102", "client 101")
    hears(pb, 500, "101", "client 102")


@case("fake node: a second Session Description with another port re-targets the media")
def _():
    fk = FakeNode()
    a, b = pair(fk, 440, 880, 4)
    wait_until(lambda: fk.forwarded.get(fk.udp_port, 0) > 20, 5, what="media on the first port")
    port2 = fk.add_udp()
    for uid in ("101", "102"):
        c = fk.conn(uid)
        c.send(4, c.sdesc(port2))
    (ra, pa), (rb, _) = a.wait(), b.wait()
    fk.stop()
    expect(ra == 0 and rb == 0, "exit %r %r" % (ra, rb))
    expect(fk.forwarded.get(port2, 0) > 50, "forwarded per port %r" % fk.forwarded)
    hears(pa, 880, "102", "client 101")
    expect(sum(1 for e in pa["events"] if e["ev"].startswith("session_description")) == 2,
           "events %r" % pa["events"])


@case("fake node: the node closes with 4006 -> close code and reason in the report, exit 1")
def _():
    fk = FakeNode()
    a, b = pair(fk, 440, 880, 10)
    wait_until(lambda: fk.forwarded.get(fk.udp_port, 0) > 10, 5, what="media")
    fk.conn("101").close(4006, "session no longer valid")
    ra, pa = a.wait(10)
    b.signal()
    b.wait()
    fk.stop()
    expect(ra == 1 and pa["close"] == {"code": 4006, "reason": "session no longer valid"},
           "exit %r close %r" % (ra, pa and pa["close"]))
    expect(pa["slots"][0]["packets"] > 0, "heard nothing before the close")


@case("fake node: SIGTERM (and SIGINT) -> the report on stdout, exit 0")
def _():
    fk = FakeNode()
    a, b = pair(fk, 440, 880, 0)  # 0: until a signal
    wait_until(lambda: fk.forwarded.get(fk.udp_port, 0) > 60, 5, what="media")
    t0 = time.monotonic()
    a.signal(signal.SIGTERM)
    b.signal(signal.SIGINT)
    (ra, pa), (rb, pb) = a.wait(5), b.wait(5)
    fk.stop()
    expect(ra == 0 and rb == 0 and pa and pb, "exit %r %r" % (ra, rb))
    expect(time.monotonic() - t0 < 3, "slow to stop")
    expect(pa["close"] is None and pa["slots"][0]["packets"] > 0, "report %r" % pa)
    expect(any(e["ev"] == "signal 15" for e in pa["events"]), "events %r" % pa["events"])
    expect(any(e["ev"] == "signal 2" for e in pb["events"]), "events %r" % pb["events"])


@case("fake node: --silent sends no RTP (RTCP only, which latches), still hears its peer")
def _():
    fk = FakeNode()
    a = VoxClient("--token", "user:101", "--endpoint", fk.endpoint, "--silent", "--duration", 2)
    b = VoxClient("--token", "user:102", "--endpoint", fk.endpoint, "--freq", 660,
                  "--duration", 2)
    (ra, pa), (rb, pb) = a.wait(), b.wait()
    fk.stop()
    expect(ra == 0 and rb == 0 and pa["sent"] == 0 and pa["rtcp_sent"] >= 1, "report %r" % pa)
    expect(pb["slots"][0]["packets"] == 0, "the silent one was heard: %r" % pb["slots"][0])
    hears(pa, 660, "102", "silent client 101")


@case("fake node: --resume reopens a dropped WebSocket with Resume (op 7) and carries on")
def _():
    fk = FakeNode()
    a, b = pair(fk, 440, 880, 3, "--resume")
    wait_until(lambda: fk.forwarded.get(fk.udp_port, 0) > 20, 5, what="media")
    old = fk.conn("101")
    old.drop()  # no close frame
    (ra, pa), (rb, _) = a.wait(), b.wait()
    fk.stop()
    expect(ra == 0 and rb == 0 and pa["close"] is None, "exit %r %r close %r" % (
        ra, rb, pa["close"]))
    evs = [e["ev"] for e in pa["events"]]
    expect("reconnect (resume)" in evs and "resumed" in evs, "events %r" % evs)
    new = fk.conn("101")
    expect(new is not old and new.received[0] == (7, {
        "connection_id": old.connection_id, "session_id": "s", "resume_token": "r" * 22}),
        "first message on the new socket %r" % (new.received[:1],))
    hears(pa, 880, "102", "client 101")


@case("fake node: without --resume a dropped WebSocket ends the run: close code 0, exit 1")
def _():
    fk = FakeNode()
    a, b = pair(fk, 440, 880, 10)
    wait_until(lambda: fk.forwarded.get(fk.udp_port, 0) > 20, 5, what="media")
    fk.conn("101").drop()
    ra, pa = a.wait(10)
    b.signal()
    b.wait()
    fk.stop()
    expect(ra == 1 and pa["close"] == {"code": 0, "reason":
                                       "connection closed without a close frame"},
           "exit %r close %r" % (ra, pa["close"]))


finish()
