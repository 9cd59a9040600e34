#!/usr/bin/python3
"""
/metrics (Prometheus text 0.0.4): `promtool check metrics` accepts it (fresh and after traffic),
and the counters and gauges move by the amounts the traffic implies.
"""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import (case, expect, finish, snowflake, start_node)  # noqa: E402

node = start_node("--pending-timeout", "600s", "--ring-timeout", "1s")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def samples():
    text, hd = node.metrics_text()
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        expect(m, "unparsable sample line %r" % line)
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def total(ss, name, **want):
    return sum(v for n, l, v in ss if n == name and all(l.get(k) == x for k, x in want.items()))


def promtool_ok(what):
    text, hd = node.metrics_text()
    ct = hd.get("content-type", "")
    expect(ct.startswith("text/plain") and "version=0.0.4" in ct, "content-type %r" % ct)
    pt = shutil.which("promtool")
    expect(pt, "promtool not installed (apt-get install prometheus)")
    p = subprocess.run([pt, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    expect(p.returncode == 0, "promtool check metrics (%s) exit %d: %s" % (
        what, p.returncode, (p.stdout + p.stderr).decode(errors="replace")[:400]))


@case("promtool check metrics accepts /metrics of a fresh node")
def _():
    promtool_ok("fresh")


@case("voice.connect: voxd_rpc_requests_total{method=voice.connect} +1, duration count +1, "
      "pending +1, grants +1, events +2")
def _():
    b = samples()
    node.rpc_ok("voice.connect", {"guild_id": snowflake(), "channel_id": snowflake(),
                                  "user_id": snowflake(), "session_id": "s"})
    a = samples()
    for name, labels, delta in [
            ("voxd_rpc_requests_total", {"method": "voice.connect"}, 1),
            ("voxd_rpc_request_duration_seconds_count", {"method": "voice.connect"}, 1),
            ("voxd_voice_connections", {"state": "pending"}, 1),
            ("voxd_grants_issued_total", {}, 1),
            ("voxd_events_emitted_total", {}, 2)]:
        d = total(a, name, **labels) - total(b, name, **labels)
        expect(d == delta, "%s%s moved by %s, expected %s" % (name, labels, d, delta))
    # the /metrics GETs themselves are not RPC requests
    expect(total(a, "voxd_rpc_requests_total") - total(b, "voxd_rpc_requests_total") == 1,
           "voxd_rpc_requests_total moved by %s over one RPC" % (
               total(a, "voxd_rpc_requests_total") - total(b, "voxd_rpc_requests_total")))


@case("RPC errors are counted with their status code")
def _():
    b = samples()
    node.rpc_err("voice.update", {"connection_id": "A" * 22, "user_id": "5", "self_mute": True},
                 404, "VOICE_CONNECTION_NOT_FOUND")
    node.raw_rpc('{"method":')
    a = samples()
    d404 = total(a, "voxd_rpc_requests_total", method="voice.update") - \
        total(b, "voxd_rpc_requests_total", method="voice.update")
    expect(d404 == 1, "voice.update count moved by %s" % d404)
    code_label = [l for n, l, v in a if n == "voxd_rpc_requests_total" and
                  l.get("method") == "voice.update"]
    expect(any("404" in l.values() for l in code_label), "no 404 label on voice.update: %s" % code_label)
    dall = total(a, "voxd_rpc_requests_total") - total(b, "voxd_rpc_requests_total")
    expect(dall == 2, "all requests moved by %s over 2 RPCs (one malformed)" % dall)


@case("calls and rings move: voxd_calls ringing +1 on create; ring outcome timed_out after expiry")
def _():
    b = samples()
    ch, u1, u2 = snowflake(), snowflake(), snowflake()
    ev = node.events()
    node.rpc_ok("call.create", {"channel_id": ch, "message_id": snowflake(), "caller_id": u1,
                                "recipients": [u1, u2]})
    m = samples()
    expect(total(m, "voxd_calls", state="ringing") - total(b, "voxd_calls", state="ringing") == 1,
           "voxd_calls ringing %s -> %s" % (total(b, "voxd_calls", state="ringing"),
                                            total(m, "voxd_calls", state="ringing")))
    while ev.next(5)["event"] != "CALL_ENDED":  # the ring expires, the unanswered call ends
        pass
    a = samples()
    d = total(a, "voxd_ring_outcomes_total", outcome="timed_out") - \
        total(b, "voxd_ring_outcomes_total", outcome="timed_out")
    expect(d == 1, "ring outcome timed_out moved by %s" % d)
    expect(total(a, "voxd_calls") == total(b, "voxd_calls"), "calls gauge did not come back")
    ev.close()


@case("promtool check metrics accepts /metrics after traffic (every family has samples)")
def _():
    promtool_ok("after traffic")
    ss = samples()
    names = {n for n, _, _ in ss}
    for fam in ("voxd_rpc_requests_total", "voxd_rpc_request_duration_seconds_bucket",
                "voxd_voice_connections", "voxd_events_emitted_total", "voxd_loop_lag_seconds"):
        expect(fam in names, "no %s sample" % fam)
    buckets = [(l.get("le"), v) for n, l, v in ss
               if n == "voxd_rpc_request_duration_seconds_bucket" and l.get("method") == "voice.connect"]
    expect(buckets and buckets[-1][0] == "+Inf", "buckets %s" % buckets)
    vals = [v for _, v in buckets]
    expect(vals == sorted(vals), "buckets not cumulative: %s" % buckets)


finish()
