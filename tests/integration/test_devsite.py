#!/usr/bin/python3
"""
The development site on the voice listener (--dev only): the demo page and the JavaScript client
from --web-root, GET /dev/grant (the node as its own gateway: voice.connect for a name in a
channel of guild 1) whose token works on /voice, GET /dev/names; and all of it 404 without --dev.
"""
import json
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import case, expect, finish, start_node  # noqa: E402

WEB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web")
dev = start_node("--dev", "--web-root", WEB, name="dev")
prod = start_node(name="prod")


def get(n, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (n.voice_port, path),
                                    timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


@case("without --dev: /, /demo.html, /voxclient.js, /dev/grant, /dev/names are 404")
def _():
    for p in ("/", "/demo.html", "/voxclient.js", "/dev/grant?name=a&channel=b", "/dev/names"):
        st, _ct, body = get(prod, p)
        expect(st == 404 and json.loads(body)["error"]["code"] == "NOT_FOUND",
               "%s -> %s %s" % (p, st, body[:100]))


@case("--dev: the demo page and the client module are served with their content types")
def _():
    for p, ct in (("/", "text/html"), ("/demo.html", "text/html"),
                  ("/voxclient.js", "text/javascript")):
        st, got, body = get(dev, p)
        expect(st == 200 and got.startswith(ct) and len(body) > 100, "%s -> %s %s" % (p, st, got))


@case("--dev: /dev/grant gives a voice.connect result whose token identifies on /voice")
def _():
    st, _ct, body = get(dev, "/dev/grant?name=alice&channel=lobby")
    r = json.loads(body)
    expect(st == 200 and "result" in r, "grant %s %s" % (st, body[:200]))
    vs, srv = r["result"]["voice_state"], r["result"]["voice_server"]
    expect(vs["guild_id"] == "1" and srv["endpoint"] == "127.0.0.1:%d" % dev.voice_port,
           "grant %r" % r)
    st2, _ct, body2 = get(dev, "/dev/grant?name=alice&channel=lobby")
    vs2 = json.loads(body2)["result"]["voice_state"]
    expect(vs2["user_id"] == vs["user_id"] and vs2["channel_id"] == vs["channel_id"] and
           vs2["connection_id"] != vs["connection_id"], "a name is one user, a channel one id")
    vc = dev.voice()
    m = vc.identify(srv["token"])
    vc.close()
    expect(isinstance(m, dict) and m.get("op") == 2, "identify with the dev grant -> %r" % (m,))
    st, _ct, names = get(dev, "/dev/names")
    expect(st == 200 and json.loads(names).get(vs["user_id"]) == "alice", "names %s" % names)


@case("--dev: a bad name or channel is 400 INVALID_REQUEST")
def _():
    for q in ("name=&channel=x", "name=a", "channel=x", "name=%3Cb%3E&channel=x",
              "name=" + "a" * 33 + "&channel=x"):
        st, _ct, body = get(dev, "/dev/grant?" + q)
        expect(st == 400 and json.loads(body)["error"]["code"] == "INVALID_REQUEST",
               "%s -> %s %s" % (q, st, body[:100]))


finish()
