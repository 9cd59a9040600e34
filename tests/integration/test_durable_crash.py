#!/usr/bin/python3
"""
Crash test of the durable node (issue 3): a mixed workload against `voxd --db` on a throwaway
PostgreSQL cluster, `kill -9` at a random moment, restart on the same database, then:
  - every acknowledged (200) change is there with its version; acknowledged leaves stay gone;
    nothing unacknowledged appears except the one request in flight at the kill;
  - replaying every acknowledged request_id returns the same reply;
  - a fresh update returns version = recovered + 1 (versions never go back);
  - the /events consumer resuming after its last ack gets a contiguous run with no gap or
    duplicate, every event published before the crash is still there (same content), and every
    acknowledged change has its VOICE_STATE_UPDATE in the stream;
  - a ring timer and an idle timer armed shortly before the kill fire at their original deadlines
    after the restart, not at deadline + downtime.
Several rounds, each on the previous round's database. The kill moments are random but seeded:
the seed is printed; VOXD_CRASH_SEED=N replays the same choices.
"""
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pglib  # noqa: E402
from voxlib import (EventClient, Fail, Voxd, case, expect, finish, not_ok, snowflake,  # noqa: E402
                    wait_until)

SEED = int(os.environ.get("VOXD_CRASH_SEED") or random.SystemRandom().randrange(1, 10**9))
print("# seed %d (replay the same kill moments and workload with VOXD_CRASH_SEED=%d)" % (SEED, SEED),
      flush=True)
rng = random.Random(SEED)

ROUNDS = 3
TIMER_S = 4.0   # --ring-timeout and --call-idle
DOWN_S = 1.5    # how long the node stays dead: a timer re-armed from the restart would be this late
EARLY_MARGIN = 0.3
LATE_MARGIN = 0.8
CONSUMER = "gw-crash"
ARGS = ("--pending-timeout", "600s", "--ring-timeout", "4s", "--call-idle", "4s",
        "--join-hold", "0s", "--store-deadline", "2s")

pg = pglib.cluster()


def boot(name):
    try:
        n = Voxd(ARGS, db=pg.conninfo, name=name).start()
    except Exception as e:
        not_ok("%s starts on the database" % name, e)
        finish()
    try:
        wait_until(lambda: pglib.readyz(n)[0] == 200, 20, 0.02, "/readyz 200 after loading")
    except Fail as e:
        not_ok("%s becomes ready" % name, e)
        finish()
    return n


# ---- the model of what was acknowledged -------------------------------------------------------------
G = snowflake()
CHANNELS = [snowflake() for _ in range(4)]
USERS = [snowflake() for _ in range(20)]
conns = {}     # connection_id -> {"user", "guild", "channel", "version", "alive", "self_mute"}
calls = {}     # DM channel -> recipients
acked = []     # (request_id, method, params, body) of every 200 reply
refusals = []  # (request_id, method, params, status, body) of every method error (remembered too)
events = {}    # seq -> event, everything the consumer ever received (all rounds)


def apply_vs(vs):
    c = conns.setdefault(vs["connection_id"], {})
    c.update(user=vs["user_id"], guild=vs["guild_id"], channel=vs["channel_id"],
             version=vs["version"], alive=vs["channel_id"] is not None,
             self_mute=vs["self_mute"])


def record(rid, method, params, body):
    acked.append((rid, method, params, body))
    res = body["result"]
    if "voice_state" in res:
        apply_vs(res["voice_state"])
    for vs in res.get("voice_states", []) if method.startswith("voice.") else []:
        apply_vs(vs)
    if method == "voice.disconnect":
        for vs in res["voice_states"]:
            conns[vs["connection_id"]]["alive"] = False


class Workload(threading.Thread):
    """Sequential mutations with request_ids on its own keep-alive connection, until stopped or
    the node dies. inflight: (touched connection ids, may_create) of the request sent and not yet
    recorded — it may or may not have been committed when the node was killed."""

    def __init__(self, node, rnd):
        super().__init__(daemon=True)
        self.cli = node.client()
        self.rng = random.Random(SEED * 100 + rnd)
        self.rnd = rnd
        self.stop = threading.Event()
        self.inflight = None
        self.sent = self.ok = 0
        self.error = None
        self.refused = {}  # "status CODE" -> count (limits, calls that ended: not acknowledged)

    def alive(self, dm=None):
        return [k for k, c in conns.items() if c["alive"] and (dm is None or (c["guild"] is None) == dm)]

    def pick(self):
        r, op = self.rng, self.rng.random()
        guild_conns, all_conns = self.alive(False), self.alive()
        if op < 0.25 or not all_conns:
            u = r.choice(USERS)
            return "voice.connect", {"guild_id": G, "channel_id": r.choice(CHANNELS), "user_id": u,
                                     "session_id": "s-%s-%d" % (u, r.randrange(3))}, set(), True
        if op < 0.55:
            k = r.choice(all_conns)
            return "voice.update", {"connection_id": k, "user_id": conns[k]["user"],
                                    "self_mute": not conns[k]["self_mute"]}, {k}, False
        if op < 0.65 and guild_conns:
            k = r.choice(guild_conns)
            ch = r.choice([c for c in CHANNELS if c != conns[k]["channel"]])
            return "voice.move", {"connection_id": k, "channel_id": ch}, {k}, False
        if op < 0.75:
            k = r.choice(all_conns)
            return "voice.disconnect", {"connection_id": k, "user_id": conns[k]["user"],
                                        "reason": "leave"}, {k}, False
        if op < 0.80:
            u = r.choice(USERS)
            touched = {k for k in guild_conns if conns[k]["user"] == u}
            return "voice.set_server_state", {"guild_id": G, "user_id": u,
                                              "mute": r.random() < 0.5}, touched, False
        if op < 0.86 or not calls:
            ch, rec = snowflake(), r.sample(USERS, 3)
            return "call.create", {"channel_id": ch, "message_id": snowflake(), "caller_id": rec[0],
                                   "recipients": rec}, set(), False
        ch = r.choice(sorted(calls))
        if op < 0.92:
            u = r.choice(calls[ch])
            return "voice.connect", {"channel_id": ch, "user_id": u,
                                     "session_id": "s-%s-dm" % u}, set(), True
        if op < 0.96:
            return "call.ring", {"channel_id": ch, "user_ids": calls[ch][1:]}, set(), False
        return "call.stop_ringing", {"channel_id": ch}, set(), False

    def run(self):
        i = 0
        while not self.stop.is_set() and i < 5000:
            i += 1
            method, params, touched, creates = self.pick()
            rid = "crash-%d-%d-%d" % (SEED, self.rnd, i)
            self.inflight = (touched, creates, rid, method, params)
            try:
                self.sent += 1
                st, body = self.cli.rpc(method, params, request_id=rid, timeout=10)
            except Exception as e:  # the node died (kill -9): this request's fate is unknown
                self.error = e
                return
            if st != 200:
                code = body.get("error", {}).get("code") if isinstance(body, dict) else body
                key = "%s %s" % (st, code)
                self.refused[key] = self.refused.get(key, 0) + 1
                refusals.append((rid, method, params, st, body))
            if st == 200:
                self.ok += 1
                if method == "call.create":
                    calls[params["channel_id"]] = params["recipients"]
                record(rid, method, params, body)
            self.inflight = None


class Reader(threading.Thread):
    """Reads /events on an EventClient that has resumed; records every event with its arrival
    time; acks every 5th event (so a crash leaves received-but-unacked events to be re-sent)."""

    def __init__(self, ec):
        super().__init__(daemon=True)
        self.ec = ec
        self.got = []          # (seq, event, arrival time)
        self.acked = ec.last   # last ack sent (the resume point counts as one)
        self.faults = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                m = self.ec.recv(0.2)
            except Exception:
                return
            if m is None:
                continue
            if isinstance(m, tuple):
                return
            t = time.time()
            if "seq" not in m:
                self.faults.append("unexpected message %r" % (m,))
                continue
            if self.ec.last is not None and m["seq"] != self.ec.last + 1:
                self.faults.append("seq %d after %d" % (m["seq"], self.ec.last))
            self.ec.last = m["seq"]
            self.got.append((m["seq"], m, t))
            if m["seq"] % 5 == 0:
                try:
                    self.ec.ack(m["seq"])
                except Exception:
                    return
                self.acked = m["seq"]


def first_call_end(reader, ch):
    for _seq, m, t in reader.got:
        if m["event"] in ("CALL_UPDATE", "CALL_DELETE") and m["data"].get("channel_id") == ch:
            return m, t
    return None


# ---- rounds -----------------------------------------------------------------------------------------
node = boot("voxd-r0")
ec = EventClient(node, CONSUMER)
ec.resume(0)
reader = Reader(ec)
reader.start()

for rnd in range(1, ROUNDS + 1):
    work_s, kill_s = rng.uniform(0.4, 1.2), rng.uniform(0.2, 0.8)
    print("# round %d: workload %.2fs, timer calls, kill -9 %.2fs later" % (rnd, work_s, kill_s),
          flush=True)
    w = Workload(node, rnd)
    w.start()
    time.sleep(work_s)  # the workload runs for a random while (nothing to await)
    main = node.client()
    ring_ch, idle_ch = snowflake(), snowflake()
    caller, callee = snowflake(), snowflake()
    t_send = time.time()
    try:
        main.rpc_ok("call.create", {"channel_id": ring_ch, "message_id": snowflake(),
                                    "caller_id": caller, "recipients": [caller, callee]})
        main.rpc_ok("call.create", {"channel_id": idle_ch, "message_id": snowflake(),
                                    "caller_id": caller, "recipients": [caller, callee],
                                    "ringing": []})
    except Fail as e:
        not_ok("round %d: timer calls created" % rnd, e)
        finish()
    t_reply = time.time()
    time.sleep(kill_s)  # the random kill moment, mid-workload
    t_kill = time.time()
    node.kill9()
    w.stop.set()
    w.join(15)
    reader.stop.set()
    reader.join(5)
    for s, m, _t in reader.got:
        events[s] = m
    pre_max = max([s for s, _m, _t in reader.got] or [0])
    pre_ack = reader.acked
    print("# round %d: %d requests sent, %d acknowledged, refused %s; consumer had seq %d, acked %d; "
          "in flight: %s" % (rnd, w.sent, w.ok, w.refused, pre_max, pre_ack,
                             w.inflight[2] if w.inflight else None), flush=True)
    if any(k.startswith("5") for k in w.refused):
        not_ok("round %d: no 5xx before the kill" % rnd, w.refused)
    if reader.faults:
        not_ok("round %d: the stream before the crash was contiguous" % rnd, reader.faults[:3])
    time.sleep(DOWN_S)  # the node stays down: timers re-armed from the restart would fire this late
    t_restart = time.time()
    node = boot("voxd-r%d" % rnd)
    maybe = w.inflight[0] if w.inflight else set()
    maybe_new = bool(w.inflight and w.inflight[1])

    @case("round %d: every acknowledged change is present with its version, leaves stay gone" % rnd)
    def _():
        bad = []
        for k, c in conns.items():
            st, body = node.rpc("voice.get", {"connection_id": k})
            got = body["result"]["voice_states"] if st == 200 else []
            if not c["alive"]:
                if got and k not in maybe:
                    bad.append("%s acknowledged as left is back: %s" % (k, got[0]))
                continue
            if not got:
                if k not in maybe:
                    bad.append("%s (version %d) is missing: %s %s" % (k, c["version"], st, body))
                continue
            v = got[0]["version"]
            if v < c["version"] or (v != c["version"] and k not in maybe):
                bad.append("%s version %d, acknowledged %d%s" % (
                    k, v, c["version"], " (in flight)" if k in maybe else ""))
        st, body = node.rpc("voice.get", {"guild_id": G})
        expect(st == 200, "voice.get guild -> %s %s" % (st, body))
        unknown = [vs["connection_id"] for vs in body["result"]["voice_states"]
                   if vs["connection_id"] not in conns]
        if len(unknown) > (1 if maybe_new else 0):
            bad.append("connections nobody was told about: %s" % unknown)
        expect(not bad, "; ".join(bad[:5]) + (" (%d problems)" % len(bad) if len(bad) > 5 else ""))

    if w.inflight:
        @case("round %d: the request in flight at the kill (%s), retried with its request_id, is "
              "applied exactly once" % (rnd, w.inflight[3]))
        def _():
            touched, _creates, rid, method, params = w.inflight
            before = {}
            for k in touched:
                st, body = node.rpc("voice.get", {"connection_id": k})
                before[k] = body["result"]["voice_states"][0] if st == 200 and \
                    body["result"]["voice_states"] else None
            st, body = node.rpc(method, params, request_id=rid)
            expect(st < 500, "retry -> %s %s" % (st, body))
            st2, body2 = node.rpc(method, params, request_id=rid)
            expect((st2, body2) == (st, body), "second retry -> %s %s, first %s %s" % (
                st2, body2, st, body))
            if st != 200:
                return
            if method == "call.create":
                calls[params["channel_id"]] = params["recipients"]
            old = {k: dict(conns[k]) for k in touched}
            record(rid, method, params, body)
            for k in touched:
                st, got = node.rpc("voice.get", {"connection_id": k})
                now = got["result"]["voice_states"][0]["version"] if st == 200 and \
                    got["result"]["voice_states"] else None
                want = conns[k]["version"] if conns[k]["alive"] else None
                expect(now == want, "%s after the retry: version %s, reply says %s" % (k, now, want))
                if method in ("voice.update", "voice.move", "voice.disconnect"):
                    expect(conns[k]["version"] == old[k]["version"] + 1,
                           "%s: acknowledged v%d before, retry reply v%d (before the retry: %s)" % (
                               k, old[k]["version"], conns[k]["version"],
                               before[k] and before[k]["version"]))
            got = node.rpc_ok("voice.get", {"guild_id": G})["voice_states"]
            unknown = [vs["connection_id"] for vs in got if vs["connection_id"] not in conns]
            expect(not unknown, "connections nobody was told about after the retry: %s" % unknown)

    @case("round %d: replaying all %d acknowledged request_ids returns the same replies" % (
        rnd, len(acked)))
    def _():
        bad = []
        for rid, method, params, body in acked:
            st, again = node.rpc(method, params, request_id=rid)
            if st != 200 or again != body:
                bad.append("%s %s: %s %s, first %s" % (rid, method, st, str(again)[:200],
                                                       str(body)[:200]))
        expect(not bad, "%d differ: %s" % (len(bad), "; ".join(bad[:3])))

    @case("round %d: replaying all %d refused request_ids returns the same refusals" % (
        rnd, len(refusals)))
    def _():
        bad = []
        for rid, method, params, st0, body in refusals:
            st, again = node.rpc(method, params, request_id=rid)
            if st != st0 or again != body:
                bad.append("%s %s: %s %s, first %s %s" % (rid, method, st, str(again)[:200], st0,
                                                          str(body)[:200]))
        expect(not bad, "%d differ: %s" % (len(bad), "; ".join(bad[:3])))

    ec = EventClient(node, CONSUMER)
    hello = ec.hello

    @case("round %d: /events resumes after the last ack (%d): contiguous, nothing lost" % (
        rnd, pre_ack))
    def _():
        expect(hello["last_seq"] >= pre_max,
               "hello %s after restart, but seq %d had been published before the crash" % (
                   hello, pre_max))
        expect(hello["first_seq"] <= pre_ack + 1,
               "hello %s: events after the consumer's ack %d were pruned" % (hello, pre_ack))
        ec.resume(pre_ack)
        again = []
        while ec.last < hello["last_seq"]:
            m = ec.next(5)  # strict: seq = last + 1 (no gap op, no duplicate)
            again.append(m)
            if m["seq"] in events and events[m["seq"]] != m:
                raise Fail("seq %d differs after the restart: was %s, now %s" % (
                    m["seq"], str(events[m["seq"]])[:200], str(m)[:200]))
            events[m["seq"]] = m
        if again:
            expect(again[0]["seq"] == pre_ack + 1,
                   "first event after resume(%d): seq %s" % (pre_ack, again[0]["seq"]))
        resent = [m["seq"] for m in again if m["seq"] <= pre_max]
        expect(resent == list(range(pre_ack + 1, pre_max + 1)),
               "received-but-unacked events re-sent: %s, expected %d..%d" % (
                   resent[:10], pre_ack + 1, pre_max))
        states = {(m["data"]["connection_id"], m["data"]["version"]) for m in events.values()
                  if m["event"] == "VOICE_STATE_UPDATE"}
        missing = []
        for rid, method, _p, body in acked:
            res = body["result"]
            for vs in ([res["voice_state"]] if "voice_state" in res else []) + (
                    res.get("voice_states", []) if method.startswith("voice.") else []):
                if (vs["connection_id"], vs["version"]) not in states:
                    missing.append("%s %s v%d" % (rid, vs["connection_id"], vs["version"]))
        expect(not missing, "acknowledged changes without their VOICE_STATE_UPDATE: %s" % missing[:5])

    reader = Reader(ec)
    reader.start()

    @case("round %d: a fresh update after the restart returns version = recovered + 1" % rnd)
    def _():
        bad = []
        for k, c in list(conns.items()):
            if not c["alive"]:
                continue
            st, body = node.rpc("voice.get", {"connection_id": k})
            if st != 200 or not body["result"]["voice_states"]:
                continue  # an in-flight leave that committed (checked above)
            cur = body["result"]["voice_states"][0]
            rid = "fresh-%d-%d-%s" % (SEED, rnd, k)
            p = {"connection_id": k, "user_id": c["user"], "self_mute": not cur["self_mute"]}
            st, r = node.rpc("voice.update", p, request_id=rid)
            if st != 200 or not r["result"]["changed"] or \
                    r["result"]["voice_state"]["version"] != cur["version"] + 1:
                bad.append("%s recovered v%d -> %s %s" % (k, cur["version"], st, str(r)[:200]))
            else:
                record(rid, "voice.update", p, r)
        expect(not bad, "; ".join(bad[:3]))

    def timer_case(what, ch):
        @case("round %d: the %s timer fires at its original deadline, not deadline + downtime" % (
            rnd, what))
        def _():
            lo, hi = t_send + TIMER_S - EARLY_MARGIN, t_reply + TIMER_S + LATE_MARGIN
            naive = t_restart + TIMER_S
            # the event's own time is what is judged below; waiting longer for it (a slow,
            # loaded machine may reach this case after `hi`) weakens nothing
            got = wait_until(lambda: first_call_end(reader, ch), max(hi - time.time() + 5, 15),
                             0.02,
                             "CALL_UPDATE/CALL_DELETE of the %s call" % what)
            m, t = got
            expect(lo <= t <= hi,
                   "%s at +%.2fs after call.create (armed %.1fs; killed at +%.2fs, restarted at "
                   "+%.2fs; a deadline re-armed at restart would be +%.2fs); expected +%.2f..+%.2f"
                   % (m["event"], t - t_send, TIMER_S, t_kill - t_send, t_restart - t_send,
                      naive - t_send, lo - t_send, hi - t_send))
            expect(naive > hi, "downtime too short to tell the deadlines apart")

    timer_case("ring", ring_ch)
    timer_case("idle", idle_ch)
    if reader.faults:
        not_ok("round %d: the stream after the restart is contiguous" % rnd, reader.faults[:3])

reader.stop.set()
reader.join(5)
finish()
