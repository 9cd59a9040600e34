#!/usr/bin/python3
"""
Audio through the real relay, judged by ear: voxclient processes (build/voxclient) join one
channel of a real voxd over voice.connect, each sending a sine tone of its own frequency over
SRTP; each report says what its client decoded on each slot (dominant frequency of the decoded
Opus audio) and from which speaker (per Speaking). Every client must hear exactly the other
clients' frequencies, never its own, with no loss on loopback, and the roster must name the
others. Also: GCM; a server-muted participant is heard by nobody but still hears everyone; a
server-deafened one is sent nothing, stays connected and is heard; five speakers in a room of
five: each listener gets its 3 slots, never more; a killed client is removed after the reap time
(one leave), one that ends normally says goodbye (close frame 1000) and leaves at once (D27); a
voice WebSocket cut mid-call (a TCP proxy, no close frame) is resumed with
--resume; a moved client keeps its slots' numbering and hears the new channel.
The signalling half of the transport is tests/integration/test_voice_media.py.
"""
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import (RPC_SECRET, VoxClient, case, expect, finish, snowflake,  # noqa: E402
                    start_node, wait_until)

node = start_node("--pending-timeout", "600s")
secret_file = os.path.join(node.tmp, "vc-rpc.secret")
with open(secret_file, "w") as f:
    f.write(RPC_SECRET)

DURATION = 3  # seconds of tone per client: 150 packets each
TOL_HZ = 3


def run(guild, channel, freqs, *extra):
    """One voxclient per frequency (user id = a fresh snowflake), all at once; returns
    [(user_id, freq, exit code, report)]."""
    users = [snowflake() for _ in freqs]
    cs = [VoxClient("--rpc", "http://127.0.0.1:%d" % node.rpc_port, "--rpc-secret-file",
                    secret_file, "--guild", guild, "--channel", channel, "--user", u,
                    "--session", "s" + u, "--freq", f, "--duration", DURATION, *extra)
          for u, f in zip(users, freqs)]
    out = []
    for u, f, c in zip(users, freqs, cs):
        rc, rep = c.wait(DURATION + 20)
        expect(rep is not None, "client %s (%d Hz): no report, exit %r, stderr %r" % (
            u, f, rc, c.err[-300:]))
        out.append((u, f, rc, rep))
    return out


def heard(rep):
    """{user_id: freq} of every slot that carried packets, and the slots' frequencies."""
    slots = [s for s in rep["slots"] if s["packets"] > 0]
    return slots, {u: s["freq_hz"] for u, s in rep["speakers"].items() if s["packets"] > 0}


def media_sessions(n):
    for line in n.metrics_text()[0].splitlines():
        if line.startswith("voxd_media_sessions "):
            return int(float(line.split()[1]))
    return None


def session_events(n):
    """{event: count} of voxd_media_session_events_total."""
    out = {}
    for line in n.metrics_text()[0].splitlines():
        if line.startswith("voxd_media_session_events_total{"):
            out[line.split('event="')[1].split('"')[0]] = int(float(line.rsplit(" ", 1)[1]))
    return out


def expect_hears(u, f, rep, expected, what):
    """rep (client u at f Hz) heard exactly `expected` = {user_id: freq}."""
    slots, speakers = heard(rep)
    got = sorted(round(s["freq_hz"]) for s in slots if s["freq_hz"] is not None)
    expect(len(slots) == len(expected) and len(got) == len(expected) and
           all(abs(a - b) < TOL_HZ for a, b in zip(got, sorted(expected.values()))),
           "%s: client %s (%d Hz) heard slots at %r Hz, expected %r" % (
               what, u, f, got, sorted(expected.values())))
    for s in slots:
        expect(s["ratio"] > 0.5 and s["lost"] == 0 and s["packets"] >= DURATION * 50 // 2,
               "%s: client %s slot %r" % (what, u, s))
        expect(s["latency_ms"] is not None and s["latency_ms"]["p50"] < 50,
               "%s: client %s slot %d latency %r" % (what, u, s["slot"], s["latency_ms"]))
    expect(set(speakers) == set(expected) and
           all(abs(speakers[k] - expected[k]) < TOL_HZ for k in expected),
           "%s: client %s speakers %r, expected %r" % (what, u, speakers, expected))


@case("three clients at 440, 660 and 880 Hz: each hears exactly the other two (AES_CM)")
def _():
    res = run(snowflake(), snowflake(), (440, 660, 880))
    for u, f, rc, rep in res:
        expect(rc == 0 and rep["close"] is None, "client %s exit %r close %r" % (
            u, rc, rep["close"]))
        expect(rep["user_id"] == u and rep["sent"] >= DURATION * 50 * 0.8,
               "client %s report %r" % (u, {k: rep[k] for k in ("user_id", "sent")}))
        others = {ou: of for ou, of, _, _ in res if ou != u}
        expect_hears(u, f, rep, others, "AES_CM")
        expect(sorted(rep["roster"]) == sorted(others), "client %s roster %r" % (
            u, rep["roster"]))
        expect(rep["rx"]["auth_fail"] == 0 and rep["rx"]["unknown_ssrc"] == 0,
               "client %s rx %r" % (u, rep["rx"]))


@case("two clients with --mode gcm (AEAD_AES_128_GCM) hear each other")
def _():
    res = run(snowflake(), snowflake(), (500, 750), "--mode", "gcm")
    for u, f, rc, rep in res:
        expect(rc == 0, "client %s exit %r close %r" % (u, rc, rep["close"]))
        expect(any("mode=AEAD_AES_128_GCM" in e["ev"] for e in rep["events"]),
               "client %s events %r" % (u, rep["events"]))
        expect_hears(u, f, rep, {ou: of for ou, of, _, _ in res if ou != u}, "GCM")


@case("a server-muted client (voice.set_server_state) is heard by nobody and hears both others")
def _():
    g, ch = snowflake(), snowflake()
    users = [snowflake() for _ in range(3)]
    freqs = (440, 660, 880)
    node.rpc_ok("voice.set_server_state", {"guild_id": g, "user_id": users[2], "mute": True})
    cs = [VoxClient("--rpc", "http://127.0.0.1:%d" % node.rpc_port, "--rpc-secret-file",
                    secret_file, "--guild", g, "--channel", ch, "--user", u, "--session",
                    "s" + u, "--freq", f, "--duration", DURATION) for u, f in zip(users, freqs)]
    reps = []
    for u, c in zip(users, cs):
        rc, rep = c.wait(DURATION + 20)
        expect(rc == 0 and rep, "client %s exit %r" % (u, rc))
        reps.append(rep)
    expect_hears(users[0], 440, reps[0], {users[1]: 660}, "muted 880")
    expect_hears(users[1], 660, reps[1], {users[0]: 440}, "muted 880")
    expect_hears(users[2], 880, reps[2], {users[0]: 440, users[1]: 660}, "muted 880 listening")


@case("a server-deafened client is sent nothing yet stays connected, and is still heard")
def _():
    g, ch = snowflake(), snowflake()
    users = [snowflake() for _ in range(3)]
    freqs = (440, 660, 880)
    node.rpc_ok("voice.set_server_state", {"guild_id": g, "user_id": users[2], "deaf": True})
    cs = [VoxClient("--rpc", "http://127.0.0.1:%d" % node.rpc_port, "--rpc-secret-file",
                    secret_file, "--guild", g, "--channel", ch, "--user", u, "--session",
                    "s" + u, "--freq", f, "--duration", DURATION) for u, f in zip(users, freqs)]
    reps = []
    for u, c in zip(users, cs):
        rc, rep = c.wait(DURATION + 20)
        expect(rc == 0 and rep and rep["close"] is None, "client %s exit %r" % (u, rc))
        reps.append(rep)
    deaf = reps[2]
    got = sum(sl["packets"] for sl in deaf["slots"])
    expect(got == 0 and deaf["rx"]["auth_fail"] == 0, "the deaf client received %d packets: %r" % (
        got, deaf["slots"]))
    expect(sorted(deaf["roster"]) == sorted(users[:2]), "the deaf client's roster %r" % (
        deaf["roster"],))
    expect_hears(users[0], 440, reps[0], {users[1]: 660, users[2]: 880}, "deaf 880 speaking")
    expect_hears(users[1], 660, reps[1], {users[0]: 440, users[2]: 880}, "deaf 880 speaking")


@case("five speakers in a five-person room: each listener gets at most its 3 slots, 3 others")
def _():
    res = run(snowflake(), snowflake(), (330, 440, 550, 660, 770))
    for u, f, rc, rep in res:
        expect(rc == 0 and rep["close"] is None, "client %s exit %r" % (u, rc))
        slots, speakers = heard(rep)
        others = {ou: of for ou, of, _, _ in res if ou != u}
        expect(len(rep["slots"]) == 3 and 1 <= len(slots) <= 3,
               "client %s: %d slots, %d carried audio" % (u, len(rep["slots"]), len(slots)))
        expect(rep["rx"]["unknown_ssrc"] == 0 and rep["rx"]["auth_fail"] == 0,
               "client %s got packets outside its slots: %r" % (u, rep["rx"]))
        expect(set(speakers) <= set(others) and u not in speakers,
               "client %s heard %r (itself, or a stranger)" % (u, speakers))
        for su, sf in speakers.items():
            # clients that end say goodbye and leave at once (D27): a slot they free may go to a
            # speaker not heard so far in the last moments of this client's run, too few
            # packets for a tone (freq_hz null)
            n_pkts = rep["speakers"][su]["packets"]
            if sf is None and n_pkts < 25:
                continue
            expect(sf is not None and abs(sf - others[su]) < TOL_HZ,
                   "client %s heard %s at %r Hz (%d packets), not %d" % (
                       u, su, sf, n_pkts, others[su]))
        expect(sorted(rep["roster"]) == sorted(others), "client %s roster %r" % (u, rep["roster"]))


@case("a killed client (SIGKILL, no goodbye) is removed after --transport-reap: one leave event")
def _():
    n2 = start_node("--pending-timeout", "600s", "--transport-reap", "2s", name="reap")
    sf = os.path.join(n2.tmp, "vc-rpc.secret")
    with open(sf, "w") as f:
        f.write(RPC_SECRET)
    g, ch = snowflake(), snowflake()
    ua, ub = snowflake(), snowflake()
    ev = n2.events()

    def client(u, freq, dur):
        return VoxClient("--rpc", "http://127.0.0.1:%d" % n2.rpc_port, "--rpc-secret-file", sf,
                         "--guild", g, "--channel", ch, "--user", u, "--session", "s" + u,
                         "--freq", freq, "--duration", dur)

    a, b = client(ua, 440, 8), client(ub, 660, 30)
    wait_until(lambda: media_sessions(n2) == 2, 10, what="two media sessions")
    time.sleep(1.0)  # not a wait for a condition: the kill is meant to land mid-call
    t0 = time.monotonic()
    b.signal(signal.SIGKILL)
    b.wait(5)
    mine = []
    while time.monotonic() - t0 < 8 and not mine:
        e = ev.recv(0.5)
        if isinstance(e, dict) and e.get("data", {}).get("user_id") == ub and \
                e["data"].get("channel_id") is None:
            mine.append(e)
    took = time.monotonic() - t0
    expect(len(mine) == 1, "no leave event for the killed client")
    expect(1.8 <= took <= 5, "left %.2f s after the kill (reap time 2 s)" % took)
    rc, rep = a.wait(20)
    expect(rc == 0 and rep and rep["close"] is None, "the survivor: exit %r" % rc)
    expect(any(e["ev"] == "client_disconnect user_id=%s" % ub for e in rep["events"]),
           "the survivor got no Client Disconnect for the killed client: %r" % (
                   [e["ev"] for e in rep["events"]],))
    ev.close()
    n2.stop()


@case("a client that ends normally says goodbye (close 1000): it leaves at once, not after "
      "--transport-reap")
def _():
    reap = 10
    n2 = start_node("--pending-timeout", "600s", "--transport-reap", "%ds" % reap, name="bye")
    sf = os.path.join(n2.tmp, "vc-rpc.secret")
    with open(sf, "w") as f:
        f.write(RPC_SECRET)
    g, ch = snowflake(), snowflake()
    ua, ub = snowflake(), snowflake()
    ev = n2.events()
    left0 = session_events(n2).get("left", 0)

    def client(u, freq, dur):
        return VoxClient("--rpc", "http://127.0.0.1:%d" % n2.rpc_port, "--rpc-secret-file", sf,
                         "--guild", g, "--channel", ch, "--user", u, "--session", "s" + u,
                         "--freq", freq, "--duration", dur)

    b = client(ub, 660, 8)
    wait_until(lambda: media_sessions(n2) == 1, 10, what="the listener's media session")
    t_start = time.monotonic()
    a = client(ua, 440, 2)
    ra, pa = a.wait(20)
    t_exit = time.monotonic()
    expect(ra == 0 and pa and pa["close"] is None and pa["connection_id"],
           "the leaver: exit %r report %r" % (ra, pa and {k: pa[k] for k in (
               "connection_id", "close")}))
    expect(t_exit - t_start < 2 + 3, "the leaver ran %.1f s for --duration 2: its close did "
           "not end promptly" % (t_exit - t_start))
    mine = []
    while time.monotonic() - t_exit < reap - 2 and not mine:
        e = ev.recv(0.5)
        if isinstance(e, dict) and e.get("data", {}).get("user_id") == ua and \
                e["data"].get("channel_id") is None:
            mine.append(e)
    took = time.monotonic() - t_exit
    expect(mine, "no leave within %d s of the client's exit (reap time %d s): the node saw no "
           "close frame 1000" % (reap - 2, reap))
    expect(took < 2, "left %.2f s after the client's exit (at once expected, reap %d s)" % (
        took, reap))
    left = session_events(n2).get("left", 0) - left0
    expect(left == 1, "voxd_media_session_events_total{event=\"left\"} moved by %d, not 1" % left)
    rb, pb = b.wait(20)
    expect(rb == 0 and pb and pb["close"] is None, "the listener: exit %r" % rb)
    expect(any(e["ev"] == "client_disconnect user_id=%s" % ua for e in pb["events"]),
           "the listener got no Client Disconnect for the leaver: %r" % (
               [e["ev"] for e in pb["events"]],))
    ev.close()
    n2.stop()


class Cutter:
    """A TCP proxy to the node's voice listener that can cut every connection it carries (no
    WebSocket close frame: a dropped transport)."""

    def __init__(self, port):
        self.port, self.pairs, self.accepted = port, [], 0
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.endpoint = "127.0.0.1:%d" % self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.port))
            self.pairs.append((c, u))
            self.accepted += 1
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Cuts what is carried now; a reconnect racing with the cut is not touched."""
        pairs, self.pairs = self.pairs, []
        for c, u in pairs:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        try:
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ls.close()


@case("--resume: the voice WebSocket cut mid-call is resumed (op 7 -> Resumed); audio goes on")
def _():
    g, ch = snowflake(), snowflake()
    cut = Cutter(node.voice_port)
    users = [snowflake() for _ in range(2)]
    cs = []
    for u, f in zip(users, (440, 880)):
        r = node.rpc_ok("voice.connect", {"guild_id": g, "channel_id": ch, "user_id": u,
                                          "session_id": "s" + u})
        ep = cut.endpoint if f == 440 else r["voice_server"]["endpoint"]
        cs.append(VoxClient("--token", r["voice_server"]["token"], "--endpoint", ep, "--freq",
                            f, "--duration", DURATION, "--resume"))
    wait_until(lambda: cut.accepted == 1 and cut.pairs, 5, what="the first client's WebSocket")
    time.sleep(1.0)  # not a wait for a condition: the cut is meant to land mid-call
    cut.cut()
    (ra, pa), (rb, pb) = cs[0].wait(DURATION + 20), cs[1].wait(DURATION + 20)
    cut.stop()
    expect(ra == 0 and rb == 0 and pa["close"] is None, "exit %r %r close %r events %r" % (
        ra, rb, pa["close"], pa["events"]))
    evs = [e["ev"] for e in pa["events"]]
    expect("reconnect (resume)" in evs and "resumed" in evs and cut.accepted >= 2,
           "events %r, %d connections" % (evs, cut.accepted))
    expect_hears(users[0], 440, pa, {users[1]: 880}, "resumed")
    expect_hears(users[1], 880, pb, {users[0]: 440}, "peer of the resumed")


def move_case(workers):
    """A and B talk in c1, D in c2; A moves to c2. With 2 workers too, c1 and c2 live on the same
    worker: a guild's rooms share one (D26), so a move never needs a new transport."""
    n2 = start_node("--pending-timeout", "600s", "--workers", str(workers))
    sf = os.path.join(n2.tmp, "vc-rpc.secret")
    with open(sf, "w") as f:
        f.write(RPC_SECRET)
    g, c1, c2 = snowflake(), snowflake(), snowflake()
    ua, ub, ud = snowflake(), snowflake(), snowflake()

    def client(u, ch, freq):
        return VoxClient("--rpc", "http://127.0.0.1:%d" % n2.rpc_port, "--rpc-secret-file", sf,
                         "--guild", g, "--channel", ch, "--user", u, "--session", "s" + u,
                         "--freq", freq, "--duration", 2 * DURATION)

    a, b = client(ua, c1, 440), client(ub, c1, 660)
    wait_until(lambda: media_sessions(n2) == 2, 10, what="two media sessions")
    d = client(ud, c2, 880)
    wait_until(lambda: media_sessions(n2) == 3, 10, what="three media sessions")
    time.sleep(1.0)  # not a wait for a condition: the move is meant to land mid-call
    vs = n2.rpc_ok("voice.get", {"guild_id": g, "channel_id": c1})["voice_states"]
    cid = next(v["connection_id"] for v in vs if v["user_id"] == ua)
    n2.rpc_ok("voice.move", {"connection_id": cid, "channel_id": c2, "user_id": ua})
    (ra, pa), (rb, pb), (rd, pd) = a.wait(60), b.wait(60), d.wait(60)
    n2.stop()
    expect(ra == 0 and rb == 0 and rd == 0, "exits %r %r %r" % (ra, rb, rd))
    ports = [e["ev"].split(" port=")[1].split()[0] for e in pa["events"]
             if e["ev"].startswith("session_description")]
    dports = [e["ev"].split(" port=")[1].split()[0] for e in pd["events"]
              if e["ev"].startswith("session_description")]
    expect(len(ports) == 1 and dports == ports,
           "a move within a guild re-sent a description or changed worker: %r / %r" % (
               ports, dports))
    # docs/protocol.md: the re-sent description has the same keys, SSRC and slots, and a slot's
    # numbering stays continuous: no packet refused by SRTP (replay), no jump in the sequence
    slots = "; ".join("slot %d: %d packets, %d lost, %d late" % (
        x["slot"], x["packets"], x["lost"], x["late"]) for x in pa["slots"])
    expect(pa["rx"]["auth_fail"] == 0 and all(x["lost"] < 10 for x in pa["slots"]),
           "after the move the mover's slots restarted their numbering under the same SSRC and "
           "key: libsrtp refused %d packets (replays), %s" % (pa["rx"]["auth_fail"], slots))
    spk = {u: v["freq_hz"] for u, v in pa["speakers"].items() if v["packets"] > 0}
    expect(set(spk) == {ub, ud} and abs(spk[ub] - 660) < TOL_HZ and abs(spk[ud] - 880) < TOL_HZ,
           "the mover heard %r (660 Hz before the move, 880 Hz after); %s" % (spk, slots))
    heard_by_d = {u: v["freq_hz"] for u, v in pd["speakers"].items() if v["packets"] > 0}
    expect(set(heard_by_d) == {ua} and abs(heard_by_d[ua] - 440) < TOL_HZ,
           "the new channel's client heard %r" % heard_by_d)
    heard_by_b = {u: v["freq_hz"] for u, v in pb["speakers"].items() if v["packets"] > 0}
    expect(set(heard_by_b) <= {ua}, "the old channel's client heard %r" % heard_by_b)


@case("voice.move with 2 workers: the guild's channels share a worker (D26), no new description; "
      "the mover's slots keep their numbering and it hears the new channel")
def _():
    move_case(2)


@case("voice.move to a channel on the same worker: no new description; the mover's slots keep "
      "their numbering and it hears the new channel")
def _():
    move_case(1)

finish()
