#!/usr/bin/python3
"""
Bad input on /rpc (docs/rpc.md "Envelope", "Idempotency", "Errors"): each gets its precise status
and code (and `field` where one field is at fault), and the node keeps serving the next request.
Started with --rpc-max-body 4096.
"""
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import (RPC_SECRET, case, expect, finish, snowflake, start_node)  # noqa: E402

MAX = 4096
node = start_node("--rpc-max-body", str(MAX), "--pending-timeout", "600s")
G, C = snowflake(), snowflake()


def still_serving():
    st, body = node.rpc("voice.get", {"guild_id": G})
    expect(st == 200 and "result" in body, "the next good request got %s %s" % (st, body))


def refused(body, status, code, field=None, what=None, **kw):
    st, js = node.raw_rpc(body, **kw)
    err = js.get("error") if isinstance(js, dict) else None
    expect(isinstance(err, dict) and st == status and err.get("code") == code,
           "%s -> %s %r, expected %s %s" % (what or repr(body)[:120], st, js if err else js[:200],
                                             status, code))
    expect(isinstance(err.get("message"), str) and err["message"], "no message: %s" % js)
    if field is not None:
        expect(err.get("field") == field, "%s -> field %r, expected %r (%s)" % (
            what or repr(body)[:120], err.get("field"), field, err.get("message")))
    still_serving()
    return err


def env(method, params, **extra):
    d = {"method": method, "params": params}
    d.update(extra)
    return json.dumps(d)


def conn_params(**kw):
    p = {"guild_id": G, "channel_id": C, "user_id": snowflake(), "session_id": "s"}
    p.update(kw)
    return p


@case("malformed JSON, not an object, empty body, invalid UTF-8 -> 400 INVALID_REQUEST")
def _():
    for b in ['{"method":"voice.get","params":{"guild_id":"1"}', '{"method":', "nope", "[]",
              '"voice.get"', "", "{}{}", '{"method":"voice.get","params":{"guild_id":"1"}} x']:
        refused(b, 400, "INVALID_REQUEST")
    refused(b'{"method":"voice.get","params":{"guild_id":"\xff\xfe"}}', 400, "INVALID_REQUEST",
            what="invalid UTF-8")


@case("duplicate keys -> 400 INVALID_REQUEST (top level, in params, deep in member)")
def _():
    refused('{"method":"voice.get","method":"voice.get","params":{"guild_id":"%s"}}' % G, 400,
            "INVALID_REQUEST", what="duplicate method")
    refused('{"method":"voice.get","params":{"guild_id":"%s","guild_id":"%s"}}' % (G, G), 400,
            "INVALID_REQUEST", what="duplicate params.guild_id")
    refused('{"method":"voice.connect","params":{"guild_id":"%s","channel_id":"%s","user_id":"5",'
            '"session_id":"s","member":{"nick":"a","x":{"k":1,"k":2}}}}' % (G, C), 400,
            "INVALID_REQUEST", what="duplicate key deep in member")
    expect(node.rpc_ok("voice.get", {"user_id": "5"})["voice_states"] == [],
           "a request with a duplicate key acted")


@case("envelope fields: missing/wrong-typed method or params, unknown top-level key -> 400 naming it")
def _():
    refused('{"params":{}}', 400, "INVALID_REQUEST", field="method")
    refused('{"method":"node.status"}', 400, "INVALID_REQUEST", field="params")
    refused('{"method":7,"params":{}}', 400, "INVALID_REQUEST", field="method")
    refused('{"method":"node.status","params":[]}', 400, "INVALID_REQUEST", field="params")
    refused('{"method":"node.status","params":{},"extra":1}', 400, "INVALID_REQUEST", field="extra")


@case("unknown method -> 404 UNKNOWN_METHOD")
def _():
    refused(env("voice.nope", {}), 404, "UNKNOWN_METHOD")
    refused(env("", {}), 404, "UNKNOWN_METHOD", what="empty method name")


@case("wrong types -> 400 INVALID_REQUEST with field")
def _():
    cases = [
        (conn_params(user_id=123), "params.user_id"),
        (conn_params(self_mute="yes"), "params.self_mute"),
        (conn_params(self_deaf=1), "params.self_deaf"),
        (conn_params(user_limit=-1), "params.user_limit"),
        (conn_params(user_limit="2"), "params.user_limit"),
        (conn_params(user_limit=1.5), "params.user_limit"),
        (conn_params(session_id=""), "params.session_id"),
        (conn_params(session_id="s" * 129), "params.session_id"),
        (conn_params(session_id=5), "params.session_id"),
        (conn_params(member=[1]), "params.member"),
        (conn_params(channel_id=None), "params.channel_id"),
    ]
    for p, f in cases:
        refused(env("voice.connect", p), 400, "INVALID_REQUEST", field=f, what="connect %s" % f)
    expect(node.rpc_ok("voice.get", {"guild_id": G})["voice_states"] == [],
           "a refused connect acted")


@case("missing required fields -> 400 INVALID_REQUEST naming the field")
def _():
    for f in ("channel_id", "user_id", "session_id"):
        p = conn_params()
        del p[f]
        refused(env("voice.connect", p), 400, "INVALID_REQUEST", field="params." + f,
                what="connect without %s" % f)
    refused(env("voice.update", {"user_id": "5", "self_mute": True}), 400, "INVALID_REQUEST",
            field="params.connection_id")
    refused(env("call.create", {"channel_id": snowflake(), "message_id": snowflake(),
                                "caller_id": "5"}), 400, "INVALID_REQUEST", field="params.recipients")
    refused(env("session.gone", {}), 400, "INVALID_REQUEST", field="params.session_id")


@case("unknown param key -> 400 INVALID_REQUEST naming it")
def _():
    err = refused(env("voice.connect", conn_params(self_mutee=True)), 400, "INVALID_REQUEST",
                  field="params.self_mutee")
    expect("self_mutee" in err["message"], "message does not name the key: %s" % err)
    refused(env("node.status", {"verbose": True}), 400, "INVALID_REQUEST", field="params.verbose")


@case("out-of-range values -> 400 INVALID_REQUEST")
def _():
    ch = snowflake()
    refused(env("call.create", {"channel_id": ch, "message_id": snowflake(), "caller_id": "1",
                                "recipients": [str(i) for i in range(1, 27)]}), 400,
            "INVALID_REQUEST", field="params.recipients", what="26 recipients")
    refused(env("call.create", {"channel_id": ch, "message_id": snowflake(), "caller_id": "1",
                                "recipients": []}), 400, "INVALID_REQUEST",
            field="params.recipients", what="0 recipients")
    refused(env("call.create", {"channel_id": ch, "message_id": snowflake(), "caller_id": "1",
                                "recipients": ["1", "2"], "region": "r" * 65}), 400,
            "INVALID_REQUEST", field="params.region", what="region of 65")
    u = snowflake()
    cid = node.rpc_ok("voice.connect", conn_params(user_id=u))["voice_state"]["connection_id"]
    refused(env("voice.update", {"connection_id": cid, "user_id": u,
                                 "viewer_stream_keys": ["%s:%s:%s" % (G, C, cid)] * 33}), 400,
            "INVALID_REQUEST", field="params.viewer_stream_keys", what="33 stream keys")
    node.rpc_err("call.get", {"channel_id": ch}, 404, "CALL_NOT_FOUND")


@case("invalid snowflakes -> 400 INVALID_REQUEST with field; 2^64-1 accepted")
def _():
    for bad in ["0", "-1", "abc", "1" * 21, "18446744073709551616", "", " 1", "1.0", "+1", "1e3",
                "99999999999999999999"]:
        refused(env("voice.get", {"user_id": bad}), 400, "INVALID_REQUEST", field="params.user_id",
                what="user_id %r" % bad)
        refused(env("voice.connect", conn_params(guild_id=bad)), 400, "INVALID_REQUEST",
                field="params.guild_id", what="connect guild_id %r" % bad)
    r = node.rpc_ok("voice.get", {"user_id": "18446744073709551615"})
    expect(r["voice_states"] == [], "max uint64 %s" % r)


@case("body over --rpc-max-body -> 413 REQUEST_TOO_LARGE; a body of exactly the limit is served")
def _():
    base = env("voice.get", {"guild_id": G})
    exact = base[:-1] + " " * (MAX - len(base)) + "}"
    expect(len(exact) == MAX, "built %d bytes" % len(exact))
    st, js = node.raw_rpc(exact)
    expect(st == 200, "%d-byte body -> %s %s" % (MAX, st, js))
    for size in (MAX + 1, 200000):
        over = base[:-1] + " " * (size - len(base)) + "}"
        try:
            st, js = node.raw_rpc(over)
        except (ConnectionResetError, BrokenPipeError) as e:
            expect(False, "%d-byte body: connection dropped without a 413 (%s)" % (size, e))
        expect(st == 413 and js.get("error", {}).get("code") == "REQUEST_TOO_LARGE",
               "%d-byte body -> %s %s" % (size, st, js))
        still_serving()


@case("missing or wrong bearer -> 401 UNAUTHORIZED, and nothing is done")
def _():
    u = snowflake()
    body = env("voice.connect", conn_params(user_id=u))
    for h, what in [(None, "no Authorization"),
                    ({"Authorization": "Bearer wrong-secret-0123456789abcdef"}, "wrong secret"),
                    ({"Authorization": "Bearer " + RPC_SECRET[:-1]}, "secret prefix"),
                    ({"Authorization": "Bearer " + RPC_SECRET + "x"}, "secret + x"),
                    ({"Authorization": "Basic " + RPC_SECRET}, "Basic scheme"),
                    ({"Authorization": "Bearer"}, "empty bearer")]:
        refused(body, 401, "UNAUTHORIZED", what=what, auth=False, headers=h)
    expect(node.rpc_ok("voice.get", {"user_id": u})["voice_states"] == [], "an unauthorized call acted")


@case("other verbs and paths: GET /rpc 405, unknown path 404 NOT_FOUND, /healthz and /readyz 200")
def _():
    st, _, b = node.http("GET", "/rpc", auth=True)
    expect(st == 405 and json.loads(b)["error"]["code"] == "METHOD_NOT_ALLOWED", "GET /rpc %s %s" % (st, b))
    st, _, b = node.http("POST", "/nope", body="{}", auth=True)
    expect(st == 404 and json.loads(b)["error"]["code"] == "NOT_FOUND", "POST /nope %s %s" % (st, b))
    for p in ("/healthz", "/readyz"):
        st, _, b = node.http("GET", p)
        expect(st == 200, "%s -> %s %s" % (p, st, b))
    still_serving()


@case("keep-alive: many requests, good and bad, on one connection")
def _():
    c = http.client.HTTPConnection("127.0.0.1", node.rpc_port, timeout=10)
    try:
        for i in range(20):
            body = env("voice.get", {"guild_id": G}) if i % 2 else '{"method":'
            st, js = node.raw_rpc(body, keepalive=c)
            expect(st == (200 if i % 2 else 400), "request %d -> %s %s" % (i, st, js))
    finally:
        c.close()


# ---- idempotency -----------------------------------------------------------------------------
@case("request_id replay: same status and body, acted once (one connection, no new events)")
def _():
    u = snowflake()
    p = conn_params(user_id=u)
    st1, b1 = node.rpc("voice.connect", p, request_id="rid-connect-1")
    expect(st1 == 200, "first %s %s" % (st1, b1))
    seq = node.last_seq()
    st2, b2 = node.rpc("voice.connect", p, request_id="rid-connect-1")
    expect(st2 == st1 and b2 == b1, "replay -> %s %s, first was %s %s" % (st2, b2, st1, b1))
    expect(node.last_seq() == seq, "replay emitted events: last_seq %s -> %s" % (seq, node.last_seq()))
    n = node.rpc_ok("voice.get", {"user_id": u})["voice_states"]
    expect(len(n) == 1, "user holds %d connections after a replayed connect" % len(n))


@case("request_id replay of an update after a later change returns the old reply, changes nothing")
def _():
    u = snowflake()
    cid = node.rpc_ok("voice.connect", conn_params(user_id=u))["voice_state"]["connection_id"]
    p = {"connection_id": cid, "user_id": u, "self_mute": True}
    st1, b1 = node.rpc("voice.update", p, request_id="rid-upd-1")
    node.rpc_ok("voice.update", {"connection_id": cid, "user_id": u, "self_mute": False})
    st2, b2 = node.rpc("voice.update", p, request_id="rid-upd-1")
    expect((st2, b2) == (st1, b1), "replay %s %s vs %s %s" % (st2, b2, st1, b1))
    v = node.rpc_ok("voice.get", {"connection_id": cid})["voice_states"][0]
    expect(v["self_mute"] is False and v["version"] == 2, "the replay acted: %s" % v)


@case("request_id reused with different params or method -> 409 REQUEST_ID_REUSED, nothing done")
def _():
    u = snowflake()
    node.rpc_ok("voice.connect", conn_params(user_id=u), request_id="rid-reuse")
    seq = node.last_seq()
    node.rpc_err("voice.connect", conn_params(user_id=snowflake()), 409, "REQUEST_ID_REUSED",
                 request_id="rid-reuse")
    node.rpc_err("voice.get", {"user_id": u}, 409, "REQUEST_ID_REUSED", request_id="rid-reuse")
    expect(node.last_seq() == seq, "a refused reuse emitted events")
    expect(len(node.rpc_ok("voice.get", {"guild_id": G, "channel_id": C})["voice_states"]) >= 1,
           "voice.get")


@case("a method error is remembered: VOICE_CHANNEL_FULL replayed even after the channel freed up")
def _():
    c = snowflake()
    u1 = snowflake()
    cid = node.rpc_ok("voice.connect", conn_params(channel_id=c, user_id=u1, user_limit=1))[
        "voice_state"]["connection_id"]
    p = conn_params(channel_id=c, user_id=snowflake(), user_limit=1)
    st, b = node.rpc("voice.connect", p, request_id="rid-full")
    expect(st == 403 and b["error"]["code"] == "VOICE_CHANNEL_FULL", "first %s %s" % (st, b))
    node.rpc_ok("voice.disconnect", {"connection_id": cid})
    st2, b2 = node.rpc("voice.connect", p, request_id="rid-full")
    expect((st2, b2) == (st, b), "replay after the channel freed: %s %s" % (st2, b2))


@case("envelope errors are not remembered: after a 413 or a 401 the same request_id is served")
def _():
    u = snowflake()
    big = '{"method":"voice.get","params":{"user_id":"%s"},"request_id":"rid-413"%s}' % (
        u, " " * MAX)
    st, b = node.raw_rpc(big)
    expect(st == 413, "oversized body -> %s %s" % (st, b))
    st, b = node.rpc("voice.get", {"user_id": u}, request_id="rid-413")
    expect(st == 200, "after a 413 with the same request_id: %s %s" % (st, b))
    st, b = node.raw_rpc('{"method":"voice.get","params":{"user_id":"%s"},"request_id":"rid-401"}'
                         % u, auth=False)
    expect(st == 401, "no bearer %s" % st)
    st, b = node.rpc("voice.get", {"user_id": u}, request_id="rid-401")
    expect(st == 200, "after a 401 with the same request_id: %s %s" % (st, b))


@case("request_id validation: empty, 129 chars, control character, non-string -> 400 field request_id")
def _():
    for rid in ["", "r" * 129, "a\u0001b", "caf\u00e9", 5]:
        refused(env("voice.get", {"guild_id": G}, request_id=rid), 400, "INVALID_REQUEST",
                field="request_id", what="request_id %r" % (rid,))
    st, b = node.rpc("voice.get", {"guild_id": G}, request_id="r" * 128)
    expect(st == 200, "128-char request_id -> %s %s" % (st, b))


finish()
