#!/usr/bin/python3
"""
Transport edges a real gateway produces: HTTP/1.1 pipelining (not supported: the first request is
answered and the connection closed, see voice/http.c), a body split over several TCP segments, a request that stalls mid-body while others are
served; on /events a burst of events to a reader that does not read for a while (none lost, none
reordered) and many concurrent readers.
"""
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import (RPC_SECRET, EventClient, Fail, case, expect, finish, snowflake,  # noqa: E402
                    start_node)

node = start_node("--pending-timeout", "600s")
G = snowflake()


def req_bytes(method, params):
    body = json.dumps({"method": method, "params": params}).encode()
    head = ("POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (RPC_SECRET, len(body)))
    return head.encode(), body


def _recv(sock, got, n):
    try:
        return sock.recv(65536)
    except socket.timeout:
        raise Fail("no reply within the timeout; got %d of %d replies" % (got, n))


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        f = f.read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def read_replies(sock, n, timeout=5.0):
    """Reads n HTTP replies (Content-Length framed) from sock; returns [(status, json)]."""
    sock.settimeout(timeout)
    buf = b""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            expect(time.monotonic() < deadline, "timed out; got %d of %d replies" % (len(out), n))
            chunk = _recv(sock, len(out), n)
            expect(chunk, "connection closed after %d of %d replies (buffer %r)" % (len(out), n, buf[:200]))
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        clen = 0
        for l in lines[1:]:
            k, _, v = l.partition(":")
            if k.strip().lower() == "content-length":
                clen = int(v)
        while len(rest) < clen:
            chunk = _recv(sock, len(out), n)
            expect(chunk, "connection closed mid-body")
            rest += chunk
        out.append((status, json.loads(rest[:clen])))
        buf = rest[clen:]
    return out


@case("pipelining: the first request is answered with Connection: close, the connection closes, "
      "the rest are served on a new connection; the node never stalls")
def _():
    users = [snowflake() for _ in range(3)]
    reqs = []
    for u in users:
        h, b = req_bytes("voice.connect", {"guild_id": G, "channel_id": snowflake(), "user_id": u,
                                           "session_id": "pipe"})
        reqs.append(h + b)
    # its own node: a node that mishandles pipelining must not take the other cases down with it
    n = start_node("--pending-timeout", "600s", name="voxd-pipelining")
    try:
        s = socket.create_connection(("127.0.0.1", n.rpc_port))
        s.settimeout(5.0)
        s.sendall(b"".join(reqs))
        data = b""
        while True:  # until the node closes the connection
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        expect(data.count(b"HTTP/1.1 ") == 1, "expected exactly one reply before the close, got %r"
               % data[:300])
        head, _, body = data.partition(b"\r\n\r\n")
        expect(b" 200 " in head.split(b"\r\n")[0], "first reply: %r" % head[:100])
        expect(b"connection: close" in head.lower(), "no Connection: close in %r" % head)
        expect(json.loads(body)["result"]["voice_state"]["user_id"] == users[0], "reply %r" % body)
        # a pipelining client retries what was not answered, on a new connection
        for u, r in zip(users[1:], reqs[1:]):
            s = socket.create_connection(("127.0.0.1", n.rpc_port))
            s.sendall(r)
            (st, rep), = read_replies(s, 1)
            s.close()
            expect(st == 200 and rep["result"]["voice_state"]["user_id"] == u, "retry: %s %r" % (st, rep))
        # each request acted once: three connections, one per user
        for u in users:
            st, rep = n.rpc("voice.get", {"user_id": u}, timeout=3)
            expect(st == 200 and len(rep["result"]["voice_states"]) == 1,
                   "user %s: %s %r" % (u, st, rep))
        t0 = cpu_ticks(n.pid())
        st, _ = n.rpc("node.status", {}, timeout=3)
        expect(st == 200, "the node does not serve after a pipelining client: %r" % st)
        # the CPU the node used while idle after it (a busy loop would show ~100 ticks here)
        time.sleep(0.5)  # measuring CPU use over half a second, not waiting for an event
        busy = cpu_ticks(n.pid()) - t0
        expect(busy < 20, "voxd used %d ticks of CPU in 0.5 s while idle" % busy)
    finally:
        n.stop(timeout=5, report=True)


@case("a body split over several TCP segments (headers, then 3 pieces) is served")
def _():
    u = snowflake()
    h, b = req_bytes("voice.connect", {"guild_id": G, "channel_id": snowflake(), "user_id": u,
                                       "session_id": "split"})
    s = socket.create_connection(("127.0.0.1", node.rpc_port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s.sendall(h[:20])
        time.sleep(0.05)  # separate segments on the wire, not a wait for the node
        s.sendall(h[20:])
        third = len(b) // 3
        for piece in (b[:third], b[third:2 * third], b[2 * third:]):
            time.sleep(0.05)
            s.sendall(piece)
        (st, r), = read_replies(s, 1)
    finally:
        s.close()
    expect(st == 200 and r["result"]["voice_state"]["user_id"] == u, "%s %s" % (st, r))


@case("a request stalled mid-body does not hold up other connections")
def _():
    h, b = req_bytes("voice.get", {"guild_id": G})
    stalled = socket.create_connection(("127.0.0.1", node.rpc_port))
    try:
        stalled.sendall(h + b[:5])
        t = time.monotonic()
        st, _ = node.rpc("voice.get", {"guild_id": G})
        expect(st == 200 and time.monotonic() - t < 2, "other request -> %s after %.2fs" % (
            st, time.monotonic() - t))
        stalled.sendall(b[5:])
        (st2, r2), = read_replies(stalled, 1)
        expect(st2 == 200, "stalled request finally -> %s %s" % (st2, r2))
    finally:
        stalled.close()


@case("burst of 1500 events to a reader that reads only afterwards: all, in order, no duplicate")
def _():
    u = snowflake()
    cid = node.rpc_ok("voice.connect", {"guild_id": G, "channel_id": snowflake(), "user_id": u,
                                        "session_id": "burst"})["voice_state"]["connection_id"]
    ec = node.events(consumer="burst")
    start = ec.last
    for i in range(1500):
        node.rpc_ok("voice.update", {"connection_id": cid, "user_id": u, "self_mute": i % 2 == 0})
    evs = ec.take(1500, timeout=10)
    expect(evs[0]["seq"] == start + 1 and evs[-1]["seq"] == start + 1500, "seqs %s..%s" % (
        evs[0]["seq"], evs[-1]["seq"]))
    versions = [e["data"]["version"] for e in evs]
    expect(versions == list(range(1, 1501)), "versions not 1..1500: first mismatch at %s" % next(
        (i for i, v in enumerate(versions) if v != i + 1), None))
    ec.close()


@case("20 concurrent /events readers each receive the same events")
def _():
    readers = [node.events(consumer="r%d" % i) for i in range(20)]
    u = snowflake()
    node.rpc_ok("voice.connect", {"guild_id": G, "channel_id": snowflake(), "user_id": u,
                                  "session_id": "many"})
    seqs = set()
    for r in readers:
        got = r.take(2)
        seqs.add(tuple(e["seq"] for e in got))
        r.close()
    expect(len(seqs) == 1, "readers disagree: %s" % seqs)


@case("an /events reader that disconnects abruptly does not disturb the node")
def _():
    ec = EventClient(node, "abrupt")
    ec.resume(0)
    ec.ws.sock.close()  # no close frame
    node.rpc_ok("node.status", {})
    ec2 = node.events(consumer="after-abrupt")
    node.rpc_ok("voice.connect", {"guild_id": G, "channel_id": snowflake(), "user_id": snowflake(),
                                  "session_id": "x"})
    ec2.take(2)
    ec2.close()


finish()
