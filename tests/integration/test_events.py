#!/usr/bin/python3
"""
The event stream (/events, docs/rpc.md): hello, resume after a seq with nothing lost or repeated,
acks and pruning, the retention bound and its gap message, protocol faults (1008), the bearer.
"""
import json
import os
import sys

import websocket

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import (EventClient, RPC_SECRET, case, expect, finish, snowflake,  # noqa: E402
                    start_node, wait_until)

node = start_node("--pending-timeout", "600s", name="voxd")
G, C = snowflake(), snowflake()
S = {}


def connect(user):
    return node.rpc_ok("voice.connect", {"guild_id": G, "channel_id": C, "user_id": user,
                                         "session_id": "s-" + user})["voice_state"]["connection_id"]


def toggle(cid, user, n):
    """n voice.update calls that each change something (one event each)."""
    for i in range(n):
        m = S.setdefault(("mute", cid), False)
        S[("mute", cid)] = not m
        r = node.rpc_ok("voice.update", {"connection_id": cid, "user_id": user, "self_mute": not m})
        expect(r["changed"], "update %d did not change: %s" % (i, r))


@case("hello on a fresh node: node_id, first_seq, last_seq 0; nothing before resume")
def _():
    ec = EventClient(node, "gw-1")
    h = ec.hello
    expect(h.get("node_id") == "voxd-test" and h.get("last_seq") == 0 and "first_seq" in h,
           "hello %s" % h)
    S["first_hello"] = h
    U = snowflake()
    S["u"] = U
    S["cid"] = connect(U)  # 2 events: seq 1, 2
    # nothing may arrive before resume (a short bounded read: absence cannot be awaited)
    m = ec.recv(0.3)
    expect(m is None, "sent before resume: %r" % (m,))
    ec.resume(0)
    evs = ec.take(2)
    expect([e["seq"] for e in evs] == [1, 2], "seqs %s" % [e["seq"] for e in evs])
    for e in evs:
        expect(set(e) == {"seq", "event", "scope", "data"}, "event keys %s" % sorted(e))
    toggle(S["cid"], U, 1)  # seq 3
    e = ec.next()
    expect(e["seq"] == 3, "seq %s" % e["seq"])
    ec.ack(3)
    ec.close()


@case("resume after the last acked seq: exactly the missed events, no gap, no duplicate")
def _():
    toggle(S["cid"], S["u"], 3)  # seq 4..6, while nobody is connected
    cid2 = connect(snowflake())  # seq 7, 8
    S["cid2"] = cid2
    ec = EventClient(node, "gw-1")
    expect(ec.hello["last_seq"] == 8, "hello %s" % ec.hello)
    ec.resume(3)
    evs = ec.take(5)
    expect([e["seq"] for e in evs] == [4, 5, 6, 7, 8], "seqs %s" % [e["seq"] for e in evs])
    expect([e["data"]["version"] for e in evs[:3]] == [2, 3, 4], "versions %s" %
           [e["data"]["version"] for e in evs[:3]])
    toggle(S["cid"], S["u"], 1)  # seq 9: the next message is it, nothing repeated in between
    e = ec.next()
    expect(e["seq"] == 9, "after the missed ones: seq %s" % e["seq"])
    ec.ack(9)
    ec.close()


@case("two readers at once both get every event in order")
def _():
    a = EventClient(node, "gw-a")
    b = EventClient(node, "gw-b")
    last = a.hello["last_seq"]
    a.resume(last)
    b.resume(last)
    toggle(S["cid"], S["u"], 4)
    sa = [e["seq"] for e in a.take(4)]
    sb = [e["seq"] for e in b.take(4)]
    expect(sa == sb == list(range(last + 1, last + 5)), "a %s b %s" % (sa, sb))
    a.ack(sa[-1])
    b.ack(sb[-1])
    a.close()
    b.close()


@case("events acked by every known consumer are pruned (hello first_seq moves past them)")
def _():
    # consumers so far: gw-1 (acked 9), gw-a, gw-b (acked 13), and possibly "default"/"peek"
    # readers that registered without acking: ack as every one of them
    ec = EventClient(node, "peek")
    last = ec.hello["last_seq"]
    ec.resume(last)
    ec.ack(last)
    ec.close()
    for name in ("gw-1", "gw-a", "gw-b", "test"):
        c = EventClient(node, name)
        c.resume(last)
        c.ack(last)
        c.close()

    def pruned():
        h = EventClient(node, "peek")
        h.close()
        return h.hello if (h.hello["first_seq"] > last or h.hello["first_seq"] == 0) else None

    wait_until(pruned, 5, what="first_seq past %d after every consumer acked it" % last)


@case("a client message that is not resume/ack closes the stream with 1008")
def _():
    for bad in ['{"op":"bogus"}', "not json", '{"ack":"x"}', '[]']:
        ec = EventClient(node, "bad")
        ec.send(bad)
        m = ec.recv(5)
        expect(isinstance(m, tuple) and m[0] == "close" and m[1] == 1008,
               "after %r: %r" % (bad, m))
        ec.close()
    # and the node still serves
    node.rpc_ok("node.status", {})


@case("/events without or with a wrong bearer is refused")
def _():
    for hdr in ([], ["Authorization: Bearer wrong-secret-xxxxxxxxxxxxxxxx"],
                ["Authorization: Basic " + RPC_SECRET]):
        try:
            ws = websocket.create_connection("ws://127.0.0.1:%d/events" % node.rpc_port,
                                             header=hdr, timeout=5)
        except websocket.WebSocketBadStatusException as e:
            expect(e.status_code == 401, "status %s for %s" % (e.status_code, hdr))
            continue
        except (ConnectionError, websocket.WebSocketException):
            continue
        m = None
        try:
            ws.settimeout(3)
            m = ws.recv()
        except Exception:
            pass
        ws.close()
        expect(False, "upgrade accepted with %s (first message %r)" % (hdr, m))


# ---- retention ---------------------------------------------------------------------------------
@case("--events-retention 5: 8 unacked events, resume after 0 -> gap then events from first_seq")
def _():
    n2 = start_node("--events-retention", "5", "--pending-timeout", "600s", name="voxd-ret")
    S["n2"] = n2
    u = snowflake()
    cid = n2.rpc_ok("voice.connect", {"guild_id": G, "channel_id": C, "user_id": u,
                                      "session_id": "s"})["voice_state"]["connection_id"]
    for i in range(6):
        n2.rpc_ok("voice.update", {"connection_id": cid, "user_id": u, "self_mute": i % 2 == 0})
    ec = EventClient(n2, "late")
    expect(ec.hello["last_seq"] == 8 and ec.hello["first_seq"] == 4, "hello %s" % ec.hello)
    ec.resume(0)
    g = ec.recv(5)
    expect(isinstance(g, dict) and g.get("op") == "gap", "first message %r" % (g,))
    expect(g == {"op": "gap", "after": 0, "first_seq": 4}, "gap %s" % json.dumps(g))
    ec.last = 3
    evs = ec.take(5)
    expect([e["seq"] for e in evs] == [4, 5, 6, 7, 8], "seqs %s" % [e["seq"] for e in evs])
    expect([e["data"]["version"] for e in evs] == [2, 3, 4, 5, 6], "versions %s" %
           [e["data"]["version"] for e in evs])
    ec.close()


@case("--events-retention 5: resume after 2 (pruned, unacked) -> gap {after 2, first_seq 4} then 4..8")
def _():
    n2 = S["n2"]
    ec = EventClient(n2, "late3")
    ec.resume(2)
    g = ec.recv(5)
    expect(g == {"op": "gap", "after": 2, "first_seq": 4}, "first message %s" % json.dumps(g)[:200])
    ec.last = 3
    evs = ec.take(5)
    expect([e["seq"] for e in evs] == [4, 5, 6, 7, 8], "seqs %s" % [e["seq"] for e in evs])
    ec.close()


@case("--events-retention 5: resume after 5 (inside the window) -> 6..8, no gap")
def _():
    n2 = S["n2"]
    ec = EventClient(n2, "late2")
    ec.resume(5)
    evs = ec.take(3)
    expect([e["seq"] for e in evs] == [6, 7, 8], "resume 5 -> %s" % [e["seq"] for e in evs])
    ec.close()
    n2.stop(report=True)


finish()
