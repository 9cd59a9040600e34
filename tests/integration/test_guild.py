#!/usr/bin/python3
"""
Guild voice against the real node (docs/rpc.md): the join/update/no-op/move/leave sequence checked
event by event on /events and by voice.get; base_version, user_limit, the per-user connection
limit, server mute, permissions, viewer stream keys, session.gone, whole-channel disconnect.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import (case, expect, finish, snowflake, start_node, voice_state_problem)  # noqa: E402

node = start_node("--pending-timeout", "600s")


def connect(guild, channel, user, session=None, **kw):
    p = {"guild_id": guild, "channel_id": channel, "user_id": user,
         "session_id": session or "sess-" + user}
    p.update(kw)
    return node.rpc_ok("voice.connect", p)


def vsu(ev, what):
    """Checks ev is a VOICE_STATE_UPDATE with an exact voice state; returns its data."""
    expect(ev["event"] == "VOICE_STATE_UPDATE", "%s: expected VOICE_STATE_UPDATE, got %s %s" % (
        what, ev["event"], ev))
    p = voice_state_problem(ev["data"])
    expect(p is None, "%s: %s" % (what, p))
    return ev["data"]


def guild_scope(ev, guild, channels, what):
    sc = ev.get("scope", {})
    expect(sc.get("type") == "guild" and sc.get("guild_id") == guild and
           sorted(sc.get("channel_ids", [])) == sorted(channels),
           "%s: scope %s, expected guild %s channels %s" % (what, sc, guild, sorted(channels)))


def get_states(**sel):
    return node.rpc_ok("voice.get", sel)["voice_states"]


# ---- the sequence ---------------------------------------------------------------------------------
G, C1, C2 = snowflake(), snowflake(), snowflake()
UA, UB = snowflake(), snowflake()
S = {}


@case("connect A: reply and events (VOICE_STATE_UPDATE v0 guild scope, VOICE_SERVER_UPDATE session)")
def _():
    ev = node.events()
    S["ev"] = ev
    r = connect(G, C1, UA, session="sess-a", member={"nick": "a", "roles": ["1"]})
    vs = r["voice_state"]
    expect(voice_state_problem(vs) is None, voice_state_problem(vs))
    expect(vs["version"] == 0 and vs["channel_id"] == C1 and vs["guild_id"] == G and
           vs["user_id"] == UA and vs["session_id"] == "sess-a", "state %s" % vs)
    expect(vs["member"] == {"nick": "a", "roles": ["1"]}, "member not echoed: %r" % vs["member"])
    expect(vs["self_mute"] is False and vs["suppress"] is False and vs["viewer_stream_keys"] == [],
           "defaults wrong: %s" % vs)
    srv = r["voice_server"]
    expect(set(srv) == {"token", "endpoint", "connection_id", "guild_id"},
           "voice_server keys %s" % sorted(srv))
    expect(srv["connection_id"] == vs["connection_id"] and srv["guild_id"] == G,
           "voice_server %s" % srv)
    expect(srv["endpoint"] == "127.0.0.1:%d" % node.voice_port, "endpoint %r" % srv["endpoint"])
    evs = ev.take(2)
    by = {e["event"]: e for e in evs}
    expect(set(by) == {"VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"}, "events %s" % [
        e["event"] for e in evs])
    d = vsu(by["VOICE_STATE_UPDATE"], "join")
    expect(d == vs, "event state %s != reply %s" % (d, vs))
    guild_scope(by["VOICE_STATE_UPDATE"], G, [C1], "join")
    sc = by["VOICE_SERVER_UPDATE"]["scope"]
    expect(sc == {"type": "session", "session_id": "sess-a"}, "server update scope %s" % sc)
    expect(by["VOICE_SERVER_UPDATE"]["data"] == srv, "server update data != reply")
    S["a"] = vs["connection_id"]


@case("connect B in the same channel: one state update v0 + grant")
def _():
    ev = S["ev"]
    r = connect(G, C1, UB)
    expect(r["voice_state"]["version"] == 0, "version %s" % r["voice_state"]["version"])
    evs = ev.take(2)
    names = sorted(e["event"] for e in evs)
    expect(names == ["VOICE_SERVER_UPDATE", "VOICE_STATE_UPDATE"], "events %s" % names)
    S["b"] = r["voice_state"]["connection_id"]
    expect(S["b"] != S["a"], "connection ids collide")


@case("update A self_mute: changed, version 1, one event")
def _():
    ev = S["ev"]
    r = node.rpc_ok("voice.update", {"connection_id": S["a"], "user_id": UA, "self_mute": True})
    expect(r["changed"] is True and r["voice_state"]["version"] == 1 and
           r["voice_state"]["self_mute"] is True, "reply %s" % r)
    d = vsu(ev.next(), "self_mute")
    expect(d["version"] == 1 and d["self_mute"] is True and d["connection_id"] == S["a"],
           "event %s" % d)


@case("no-op update: changed false, no version bump, no event")
def _():
    ev = S["ev"]
    before = node.last_seq()
    r = node.rpc_ok("voice.update", {"connection_id": S["a"], "user_id": UA, "self_mute": True})
    expect(r["changed"] is False and r["voice_state"]["version"] == 1, "reply %s" % r)
    after = node.last_seq()
    expect(after == before, "last_seq went %s -> %s on a no-op" % (before, after))
    # the next event on the stream is the next real change, with seq +1 (checked by next())
    node.rpc_ok("voice.update", {"connection_id": S["a"], "user_id": UA, "self_deaf": True})
    d = vsu(ev.next(), "self_deaf after no-op")
    expect(d["version"] == 2 and d["self_deaf"] is True, "event after no-op %s" % d)


@case("move A to C2: ONE event, version+1, same connection_id, scope names new and old channel")
def _():
    ev = S["ev"]
    r = node.rpc_ok("voice.move", {"connection_id": S["a"], "channel_id": C2, "user_id": UA})
    vs = r["voice_state"]
    expect(vs["channel_id"] == C2 and vs["version"] == 3 and vs["connection_id"] == S["a"],
           "reply %s" % vs)
    expect(r.get("voice_server", "absent") is None, "voice_server %r (same node: null)" %
           (r.get("voice_server", "absent"),))
    e = ev.next()
    d = vsu(e, "move")
    expect(d["channel_id"] == C2 and d["version"] == 3 and d["connection_id"] == S["a"],
           "move event %s" % d)
    guild_scope(e, G, [C1, C2], "move")
    # nothing else was emitted for the move: the next event is the marker's
    node.rpc_ok("voice.update", {"connection_id": S["b"], "user_id": UB, "self_video": True})
    d = vsu(ev.next(), "marker after move")
    expect(d["connection_id"] == S["b"] and d["version"] == 1, "a second event followed the move: %s" % d)


@case("voice.get after the move: A in C2 v3, B in C1 v1")
def _():
    st = {v["connection_id"]: v for v in get_states(guild_id=G)}
    expect(set(st) == {S["a"], S["b"]}, "connections %s" % list(st))
    expect(st[S["a"]]["channel_id"] == C2 and st[S["a"]]["version"] == 3, "A %s" % st[S["a"]])
    expect(st[S["b"]]["channel_id"] == C1 and st[S["b"]]["version"] == 1, "B %s" % st[S["b"]])
    ch = get_states(guild_id=G, channel_id=C2)
    expect([v["connection_id"] for v in ch] == [S["a"]], "channel C2 %s" % ch)
    us = get_states(user_id=UA)
    expect([v["connection_id"] for v in us] == [S["a"]], "user A %s" % us)
    one = get_states(connection_id=S["b"])
    expect(len(one) == 1 and one[0]["version"] == 1, "by connection %s" % one)


@case("disconnect A: channel_id null, version+1, scope names C2")
def _():
    ev = S["ev"]
    r = node.rpc_ok("voice.disconnect", {"connection_id": S["a"], "user_id": UA})
    expect(r["disconnected"] == 1 and len(r["voice_states"]) == 1, "reply %s" % r)
    last = r["voice_states"][0]
    expect(last["channel_id"] is None and last["version"] == 4, "last state %s" % last)
    e = ev.next()
    d = vsu(e, "leave")
    expect(d["channel_id"] is None and d["version"] == 4 and d["connection_id"] == S["a"] and
           d["guild_id"] == G, "leave event %s" % d)
    guild_scope(e, G, [C2], "leave")
    st = get_states(guild_id=G)
    expect([v["connection_id"] for v in st] == [S["b"]], "after leave %s" % st)
    node.rpc_err("voice.disconnect", {"connection_id": S["a"]}, 404, "VOICE_CONNECTION_NOT_FOUND")
    node.rpc_err("voice.update", {"connection_id": S["a"], "user_id": UA, "self_mute": False}, 404,
                 "VOICE_CONNECTION_NOT_FOUND")


@case("voice.update by another user: 403 VOICE_USER_MISMATCH, nothing changes")
def _():
    node.rpc_err("voice.update", {"connection_id": S["b"], "user_id": UA, "self_mute": True}, 403,
                 "VOICE_USER_MISMATCH")
    v = get_states(connection_id=S["b"])[0]
    expect(v["self_mute"] is False and v["version"] == 1, "changed: %s" % v)


# ---- base_version ------------------------------------------------------------------------------
@case("base_version: stale (2 behind) -> 409 and nothing changes; current-1 accepted; ahead -> 400")
def _():
    g, c, u = snowflake(), snowflake(), snowflake()
    cid = connect(g, c, u)["voice_state"]["connection_id"]
    for flag in ("self_mute", "self_deaf"):
        node.rpc_ok("voice.update", {"connection_id": cid, "user_id": u, flag: True})
    ev = node.events()
    node.rpc_err("voice.update", {"connection_id": cid, "user_id": u, "base_version": 0,
                                  "self_video": True}, 409, "STALE_BASE_VERSION")
    v = get_states(connection_id=cid)[0]
    expect(v["version"] == 2 and v["self_video"] is False, "stale update changed %s" % v)
    r = node.rpc_ok("voice.update", {"connection_id": cid, "user_id": u, "base_version": 1,
                                     "self_video": True})
    expect(r["voice_state"]["version"] == 3 and r["voice_state"]["self_video"] is True, "%s" % r)
    d = vsu(ev.next(), "base_version current-1")  # the refused one emitted nothing
    expect(d["version"] == 3, "event %s" % d)
    r = node.rpc_ok("voice.update", {"connection_id": cid, "user_id": u, "base_version": 3,
                                     "self_video": False})
    expect(r["voice_state"]["version"] == 4, "base_version == current: %s" % r)
    node.rpc_err("voice.update", {"connection_id": cid, "user_id": u, "base_version": 9,
                                  "self_mute": False}, 400, "INVALID_REQUEST")
    ev.close()


# ---- limits --------------------------------------------------------------------------------------
@case("user_limit counts distinct users: same user's 2nd connection fits, a 3rd user is refused")
def _():
    g, c = snowflake(), snowflake()
    x, y, z = snowflake(), snowflake(), snowflake()
    connect(g, c, x, user_limit=2)
    connect(g, c, y, user_limit=2)
    connect(g, c, x, session="sess-x2", user_limit=2)
    node.rpc_err("voice.connect", {"guild_id": g, "channel_id": c, "user_id": z,
                                   "session_id": "sess-z", "user_limit": 2}, 403, "VOICE_CHANNEL_FULL")
    st = get_states(guild_id=g, channel_id=c)
    expect(len(st) == 3 and z not in {v["user_id"] for v in st}, "channel %s" % st)
    connect(g, c, z, user_limit=0)  # 0 = unlimited


@case("6th connection of a user in a guild -> 403 VOICE_CONNECTION_LIMIT_REACHED")
def _():
    g, u = snowflake(), snowflake()
    chans = [snowflake() for _ in range(3)]
    for i in range(5):
        connect(g, chans[i % 3], u, session="s%d" % i)
    node.rpc_err("voice.connect", {"guild_id": g, "channel_id": chans[0], "user_id": u,
                                   "session_id": "s6"}, 403, "VOICE_CONNECTION_LIMIT_REACHED")
    expect(len(get_states(user_id=u)) == 5, "user holds %d" % len(get_states(user_id=u)))
    # another guild is another budget
    connect(snowflake(), snowflake(), u, session="s7")


# ---- moderation ----------------------------------------------------------------------------------
@case("set_server_state mute: all the user's connections in the guild, version+1 each, and later ones")
def _():
    g, c, u, other = snowflake(), snowflake(), snowflake(), snowflake()
    a = connect(g, c, u, session="m1")["voice_state"]["connection_id"]
    b = connect(g, snowflake(), u, session="m2")["voice_state"]["connection_id"]
    o = connect(g, c, other)["voice_state"]["connection_id"]
    ev = node.events()
    r = node.rpc_ok("voice.set_server_state", {"guild_id": g, "user_id": u, "mute": True})
    vs = {v["connection_id"]: v for v in r["voice_states"]}
    expect(set(vs) == {a, b}, "reply states %s" % list(vs))
    expect(all(v["mute"] is True and v["version"] == 1 for v in vs.values()), "reply %s" % vs)
    evs = [vsu(e, "server mute") for e in ev.take(2)]
    expect({d["connection_id"] for d in evs} == {a, b} and all(d["mute"] and d["version"] == 1
                                                                for d in evs), "events %s" % evs)
    expect(get_states(connection_id=o)[0]["mute"] is False, "other user muted")
    r = node.rpc_ok("voice.set_server_state", {"guild_id": g, "user_id": u, "mute": True})
    expect(all(v["version"] == 1 for v in r["voice_states"]), "repeat bumped %s" % r)
    later = connect(g, c, u, session="m3")["voice_state"]
    expect(later["mute"] is True and later["version"] == 0, "later connection %s" % later)
    node.rpc_err("voice.set_server_state", {"guild_id": g, "user_id": u}, 400, "INVALID_REQUEST")
    ev.close()


@case("set_permissions can_speak=false -> suppress true, version+1; can_stream=false clears self_stream")
def _():
    g, c, u = snowflake(), snowflake(), snowflake()
    cid = connect(g, c, u, self_stream=True)["voice_state"]
    expect(cid["self_stream"] is True, "self_stream with permission %s" % cid)
    cid = cid["connection_id"]
    ev = node.events()
    r = node.rpc_ok("voice.set_permissions", {"guild_id": g, "user_id": u, "can_speak": False})
    v = r["voice_states"][0]
    expect(v["suppress"] is True and v["version"] == 1, "reply %s" % v)
    d = vsu(ev.next(), "suppress")
    expect(d["suppress"] is True and d["version"] == 1, "event %s" % d)
    r = node.rpc_ok("voice.set_permissions", {"guild_id": g, "user_id": u, "can_stream": False})
    v = r["voice_states"][0]
    expect(v["self_stream"] is False and v["version"] == 2, "reply %s" % v)
    r = node.rpc_ok("voice.update", {"connection_id": cid, "user_id": u, "self_stream": True})
    expect(r["voice_state"]["self_stream"] is False, "self_stream without permission %s" % r)
    s2 = connect(g, c, snowflake(), can_speak=False, can_video=False, self_video=True)["voice_state"]
    expect(s2["suppress"] is True and s2["self_video"] is False, "connect without perms %s" % s2)
    ev.close()


@case("viewer_stream_keys: valid accepted; malformed / other channel / unknown -> 400 INVALID_STREAM_KEY")
def _():
    g, c, c2 = snowflake(), snowflake(), snowflake()
    s = connect(g, c, snowflake(), self_stream=True)["voice_state"]["connection_id"]
    far = connect(g, c2, snowflake())["voice_state"]["connection_id"]
    uv = snowflake()
    v = connect(g, c, uv)["voice_state"]["connection_id"]
    key = "%s:%s:%s" % (g, c, s)
    r = node.rpc_ok("voice.update", {"connection_id": v, "user_id": uv, "viewer_stream_keys": [key]})
    expect(r["voice_state"]["viewer_stream_keys"] == [key] and r["voice_state"]["version"] == 1,
           "reply %s" % r)
    for bad in ["abc", "%s:%s" % (g, c), "%s:%s:%s" % (g, c2, far), "%s:%s:%s" % (g, c, "A" * 22),
                "dm:%s:%s" % (c, s), "%s:%s:%s" % (g, c, s) + ":x"]:
        node.rpc_err("voice.update", {"connection_id": v, "user_id": uv,
                                      "viewer_stream_keys": [bad]}, 400, "INVALID_STREAM_KEY")
    st = get_states(connection_id=v)[0]
    expect(st["viewer_stream_keys"] == [key] and st["version"] == 1, "after refusals %s" % st)


@case("move of a watched connection: the viewer loses the key in its own update")
def _():
    g, c, c2 = snowflake(), snowflake(), snowflake()
    us, uv = snowflake(), snowflake()
    s = connect(g, c, us, self_stream=True)["voice_state"]["connection_id"]
    v = connect(g, c, uv)["voice_state"]["connection_id"]
    node.rpc_ok("voice.update", {"connection_id": v, "user_id": uv,
                                 "viewer_stream_keys": ["%s:%s:%s" % (g, c, s)]})
    ev = node.events()
    node.rpc_ok("voice.move", {"connection_id": s, "channel_id": c2})
    evs = [vsu(e, "move with viewer") for e in ev.take(2)]
    by = {d["connection_id"]: d for d in evs}
    expect(set(by) == {s, v}, "events for %s" % list(by))
    expect(by[s]["channel_id"] == c2 and by[s]["version"] == 1, "mover %s" % by[s])
    expect(by[v]["viewer_stream_keys"] == [] and by[v]["version"] == 2, "viewer %s" % by[v])
    ev.close()


# ---- removal -------------------------------------------------------------------------------------
@case("session.gone drops exactly that session's connections, one leave each")
def _():
    g, c = snowflake(), snowflake()
    u1, u2 = snowflake(), snowflake()
    a = connect(g, c, u1, session="gone-1")["voice_state"]["connection_id"]
    b = connect(g, snowflake(), u1, session="gone-1")["voice_state"]["connection_id"]
    keep = connect(g, c, u2, session="stays")["voice_state"]["connection_id"]
    ev = node.events()
    r = node.rpc_ok("session.gone", {"session_id": "gone-1"})
    expect(r == {"disconnected": 2}, "reply %s" % r)
    evs = [vsu(e, "session.gone") for e in ev.take(2)]
    expect({d["connection_id"] for d in evs} == {a, b} and
           all(d["channel_id"] is None and d["version"] == 1 for d in evs), "events %s" % evs)
    expect([v["connection_id"] for v in get_states(guild_id=g)] == [keep], "left %s" %
           get_states(guild_id=g))
    r = node.rpc_ok("session.gone", {"session_id": "gone-1"})
    expect(r == {"disconnected": 0}, "second session.gone %s" % r)
    ev.close()


@case("disconnect a whole guild channel: N leaves, other channel untouched; by guild+user")
def _():
    g, c, other = snowflake(), snowflake(), snowflake()
    ids = [connect(g, c, snowflake())["voice_state"]["connection_id"] for _ in range(3)]
    uo = snowflake()
    o = connect(g, other, uo)["voice_state"]["connection_id"]
    ev = node.events()
    r = node.rpc_ok("voice.disconnect", {"guild_id": g, "channel_id": c, "reason": "channel_deleted"})
    expect(r["disconnected"] == 3 and {v["connection_id"] for v in r["voice_states"]} == set(ids),
           "reply %s" % r)
    evs = ev.take(3)
    for e in evs:
        d = vsu(e, "channel delete")
        expect(d["channel_id"] is None and d["version"] == 1, "event %s" % d)
        guild_scope(e, g, [c], "channel delete")
    expect([v["connection_id"] for v in get_states(guild_id=g)] == [o], "left %s" %
           get_states(guild_id=g))
    r = node.rpc_ok("voice.disconnect", {"guild_id": g, "channel_id": c})
    expect(r["disconnected"] == 0, "empty channel %s" % r)
    r = node.rpc_ok("voice.disconnect", {"guild_id": g, "user_id": uo, "reason": "ban"})
    expect(r["disconnected"] == 1, "by guild+user %s" % r)
    node.rpc_err("voice.disconnect", {"guild_id": g}, 400, "INVALID_REQUEST")
    node.rpc_err("voice.disconnect", {"session_id": "x", "guild_id": g, "user_id": uo}, 400,
                 "INVALID_REQUEST")
    ev.close()


@case("move into a full channel -> 403 VOICE_CHANNEL_FULL, the connection stays where it was")
def _():
    g, c1, c2 = snowflake(), snowflake(), snowflake()
    connect(g, c2, snowflake(), user_limit=1)
    u = snowflake()
    cid = connect(g, c1, u)["voice_state"]["connection_id"]
    before = node.last_seq()
    node.rpc_err("voice.move", {"connection_id": cid, "channel_id": c2, "user_limit": 1}, 403,
                 "VOICE_CHANNEL_FULL")
    v = get_states(connection_id=cid)[0]
    expect(v["channel_id"] == c1 and v["version"] == 0, "after refused move %s" % v)
    expect(node.last_seq() == before, "a refused move emitted events")
    node.rpc_err("voice.move", {"connection_id": cid, "channel_id": c2, "user_id": snowflake()},
                 403, "VOICE_USER_MISMATCH")
    r = node.rpc_ok("voice.move", {"connection_id": cid, "channel_id": c1})
    expect(r["voice_state"]["version"] == 0, "move to the same channel bumped: %s" % r)
    expect(node.last_seq() == before, "a move to the same channel emitted events")


@case("server deaf then undeaf: version+1 each, mute untouched")
def _():
    g, c, u = snowflake(), snowflake(), snowflake()
    cid = connect(g, c, u)["voice_state"]["connection_id"]
    r = node.rpc_ok("voice.set_server_state", {"guild_id": g, "user_id": u, "deaf": True})
    v = r["voice_states"][0]
    expect(v["deaf"] is True and v["mute"] is False and v["version"] == 1, "deaf %s" % v)
    r = node.rpc_ok("voice.set_server_state", {"guild_id": g, "user_id": u, "deaf": False})
    v = r["voice_states"][0]
    expect(v["deaf"] is False and v["version"] == 2, "undeaf %s" % v)
    later = connect(g, c, u, session="later")["voice_state"]
    expect(later["deaf"] is False, "later connection deaf after undeaf: %s" % later)
    expect(get_states(connection_id=cid)[0]["version"] == 2, "version")


@case("voice.disconnect {connection_id, user_id} of another user -> 403 VOICE_USER_MISMATCH")
def _():
    g, c, u = snowflake(), snowflake(), snowflake()
    cid = connect(g, c, u)["voice_state"]["connection_id"]
    node.rpc_err("voice.disconnect", {"connection_id": cid, "user_id": snowflake()}, 403,
                 "VOICE_USER_MISMATCH")
    expect(len(get_states(connection_id=cid)) == 1, "disconnected anyway")


@case("voice.get is ordered by channel, user, connection")
def _():
    g = snowflake()
    chans = sorted(snowflake() for _ in range(3))
    users = sorted(snowflake() for _ in range(3))
    for ch in reversed(chans):  # 4 connections per user: under the limit of 5
        for u in reversed(users):
            connect(g, ch, u, session="o1")
            if ch == chans[1]:
                connect(g, ch, u, session="o2")
    st = get_states(guild_id=g)
    key = [(int(v["channel_id"]), int(v["user_id"]), v["connection_id"]) for v in st]
    expect(len(st) == 12 and key == sorted(key), "order %s" % [k[:2] for k in key])
    st = get_states(guild_id=g, channel_id=chans[1])
    key = [(int(v["user_id"]), v["connection_id"]) for v in st]
    expect(len(st) == 6 and key == sorted(key), "channel order %s" % key)


@case("member is echoed and can be updated (version+1); a repeated member is a no-op")
def _():
    g, c, u = snowflake(), snowflake(), snowflake()
    cid = connect(g, c, u, member={"nick": "x"})["voice_state"]["connection_id"]
    r = node.rpc_ok("voice.update", {"connection_id": cid, "user_id": u, "member": {"nick": "y"}})
    expect(r["changed"] and r["voice_state"]["member"] == {"nick": "y"} and
           r["voice_state"]["version"] == 1, "member update %s" % r)
    r = node.rpc_ok("voice.update", {"connection_id": cid, "user_id": u, "member": {"nick": "y"}})
    expect(not r["changed"] and r["voice_state"]["version"] == 1, "same member %s" % r)


@case("node.status reports this node and its load")
def _():
    r = node.rpc_ok("node.status", {})
    expect(r.get("node_id") == "voxd-test" and r.get("health") == "ok", "status %s" % r)
    expect(set(r.get("load", {})) >= {"connections", "pending", "calls", "channels"}, "load %s" % r)
    n = len(get_states(user_id=UB))
    expect(r["load"]["connections"] >= n, "load %s" % r)


finish()
