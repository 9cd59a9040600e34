#!/usr/bin/python3
"""
Bad input on the webrtc transport (issue 5), over real sockets against a real node with one media
worker (--workers 1), judged by close codes, the answers on the wire and /metrics:

- Select Protocol webrtc with a malformed SDP, an offer without Opus (PCMU only), without
  a=fingerprint, without ICE credentials, with 17 m-lines or a 300-character ice-pwd (the parser's
  `oversize`), a video-only offer, a=setup:passive, no a=rtcp-mux: each closes with 4013
  "invalid offer: <reason>" and voxd_webrtc_offers_refused_total{reason} counts exactly it. An offer
  over the 16 KiB WebSocket limit never reaches the parser (4002, nothing counted), nor does one
  with a NUL (the JSON decoder refuses "\\u0000": 4002).
- A real Chromium 156 offer (tests/unit/webrtc/fixtures/) is answered (op 4); from a UDP socket of
  ours: STUN Binding requests to the answer's candidate with USERNAME "<our ufrag>:abcd" — a wrong
  MESSAGE-INTEGRITY gets 401 without MESSAGE-INTEGRITY, an unknown ufrag 401, no credentials 400,
  an unknown comprehension-required attribute 420 (authenticated), ICE-CONTROLLED alone 487;
  the right MESSAGE-INTEGRITY (HMAC-SHA1 with the answer's ice-pwd, RFC 5389 §15.4) gets a
  success whose XOR-MAPPED-ADDRESS is our socket and whose own MESSAGE-INTEGRITY and FINGERPRINT
  verify. Dropped without an answer: no FINGERPRINT, a wrong FINGERPRINT, truncated datagrams,
  a header length past the datagram or not a multiple of 4, an attribute running past the end, a
  wrong magic cookie, MESSAGE-INTEGRITY of a bad size, a Binding success response and an
  indication sent to the worker. voxd_webrtc_stun_requests_total{result} moves by exactly the
  ok/refused counts (refused = voxd_media_drops_total{reason="stun"}).
- DTLS garbage (first byte 20–63, random rest) from an address that passed no STUN check is
  dropped and counted in voxd_media_drops_total{reason="dtls"}; from the address that did, it is
  fed to that transport's DTLS server, whose OpenSSL drops records that do not parse.
- Meanwhile two build/voxclient processes (srtp) talk in another channel on the same worker: after
  all of it each still hears the other's tone, and the node is alive and answers STUN.
"""
import hashlib
import hmac
import json
import os
import random
import re
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import (RPC_SECRET, VoxClient, case, expect, finish, snowflake,  # noqa: E402
                    start_node, wait_until, ws_recv)

node = start_node("--workers", "1", "--pending-timeout", "600s")
G = snowflake()
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIXTURE = os.path.join(ROOT, "tests", "unit", "webrtc", "fixtures",
                       "chromium156_1send_3recv_offer.sdp")
with open(FIXTURE, newline="") as f:
    OFFER = f.read()
secret_file = os.path.join(node.tmp, "vc-rpc.secret")
with open(secret_file, "w") as f:
    f.write(RPC_SECRET)
rng = random.Random(5)


# ---- /metrics ---------------------------------------------------------------------------------
def metrics():
    """{(name, frozenset(labels)): value} of every sample."""
    text, _ = node.metrics_text()
    out = {}
    for line in text.splitlines():
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? ([0-9.eE+-]+)$', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([a-z_]+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def mv(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())), 0.0)


REFUSED = "voxd_webrtc_offers_refused_total"
STUN = "voxd_webrtc_stun_requests_total"
DROPS = "voxd_media_drops_total"
DTLS = "voxd_webrtc_dtls_handshakes_total"
PACKETS = "voxd_media_packets_total"


# ---- SDP --------------------------------------------------------------------------------------
def sections(sdp):
    """(session part, [m-sections]) as lists of lines (CRLF stripped)."""
    lines = sdp.split("\r\n")
    if lines and lines[-1] == "":
        lines.pop()
    sess, secs = [], []
    for ln in lines:
        if ln.startswith("m="):
            secs.append([ln])
        elif secs:
            secs[-1].append(ln)
        else:
            sess.append(ln)
    return sess, secs


def join_sdp(sess, secs):
    return "\r\n".join(sess + [ln for s in secs for ln in s]) + "\r\n"


def without(sdp, pred):
    return "".join(ln + "\r\n" for ln in sdp.split("\r\n")[:-1] if not pred(ln))


def pcmu_only(sdp):
    """Every audio section offers PCMU only (m= line and attributes)."""
    sess, secs = sections(sdp)
    out = []
    for s in secs:
        if s[0].startswith("m=audio"):
            parts = s[0].split()
            s = [" ".join(parts[:3] + ["0"])] + [
                ln for ln in s[1:]
                if not re.match(r"a=(rtpmap|fmtp|rtcp-fb):(\d+)", ln) or
                re.match(r"a=(rtpmap|fmtp|rtcp-fb):0 ", ln)]
        out.append(s)
    return join_sdp(sess, out)


def video_only(sdp):
    sess, secs = sections(sdp)
    vid = [s for s in secs if s[0].startswith("m=video")]
    mid = [ln for ln in vid[0] if ln.startswith("a=mid:")][0][6:]
    sess = ["a=group:BUNDLE " + mid if ln.startswith("a=group:BUNDLE") else ln for ln in sess]
    return join_sdp(sess, vid)


def many_mlines(sdp, n):
    sess, secs = sections(sdp)
    extra = [["m=video 0 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:x%d" % i,
              "a=inactive"] for i in range(n - len(secs))]
    return join_sdp(sess, secs + extra)


def long_pwd(sdp):
    return re.sub(r"a=ice-pwd:[^\r]*", "a=ice-pwd:" + "p" * 300, sdp)


# ---- the voice WebSocket ----------------------------------------------------------------------
def recv_full(vc, timeout=5.0):
    """Next message: a dict, ("close", code, reason), or None on timeout."""
    return ws_recv(vc.ws, timeout)


def select_webrtc(sdp, channel=None, raw=None):
    """voice.connect + Identify + Select Protocol webrtc; returns (client, first reply)."""
    user = snowflake()
    r = node.rpc_ok("voice.connect", {"guild_id": G, "channel_id": channel or snowflake(),
                                      "user_id": user, "session_id": "s" + user})
    vc = node.voice()
    ready = vc.identify(r["voice_server"]["token"])
    expect(isinstance(ready, dict) and ready.get("op") == 2, "identify -> %r" % (ready,))
    vc.send(raw if raw is not None else {"op": 1, "d": {"protocol": "webrtc", "sdp": sdp}})
    return vc, recv_full(vc)


def expect_refused(sdp, reason, code=4013, raw=None):
    before = metrics()
    vc, m = select_webrtc(sdp, raw=raw)
    try:
        want = "invalid offer: " + reason if code == 4013 else reason
        expect(isinstance(m, tuple) and m[1] == code and m[2].startswith(want),
               "expected close %d %r, got %r" % (code, want, m))
        after = metrics()
        for (name, labels), v in after.items():
            if name != REFUSED:
                continue
            delta = v - before.get((name, labels), 0.0)
            want_d = 1 if code == 4013 and dict(labels).get("reason") == reason else 0
            expect(delta == want_d, "%s%s moved by %s (expected %d)" % (
                name, dict(labels), delta, want_d))
    finally:
        vc.close()


@case("the Chromium fixture offer is valid as is (ufrag, pwd, fingerprint, setup:actpass)")
def _():
    expect("a=ice-ufrag:LoDV\r\n" in OFFER and "a=ice-pwd:XPtdfZX8RU0hY/CHLw+86Io9\r\n" in OFFER,
           "fixture credentials")
    expect(re.search(r"a=fingerprint:sha-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}\r\n", OFFER),
           "fixture fingerprint")
    expect("a=setup:actpass" in OFFER and "a=rtcp-mux" in OFFER, "fixture setup/rtcp-mux")
    expect(len(json.dumps({"op": 1, "d": {"protocol": "webrtc", "sdp": OFFER}})) < 16384,
           "the fixture's Select Protocol fits the 16 KiB message limit")


@case("malformed SDP -> 4013 invalid offer: malformed, counted")
def _():
    expect_refused(OFFER.replace("a=mid:0\r\n", "a=mid:0\r\nthis is not sdp\r\n"), "malformed")
    expect_refused("v=1\r\n" + OFFER[5:], "malformed")


@case("an offer with PCMU only (no Opus) -> 4013 no_opus, counted")
def _():
    o = pcmu_only(OFFER)
    expect("opus" not in o and "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n" in o, "PCMU-only offer")
    expect_refused(o, "no_opus")


@case("no a=fingerprint -> 4013 no_fingerprint; no ICE ufrag/pwd -> 4013 no_ice; counted")
def _():
    expect_refused(without(OFFER, lambda ln: ln.startswith("a=fingerprint:")), "no_fingerprint")
    expect_refused(without(OFFER, lambda ln: ln.startswith("a=ice-")), "no_ice")
    expect_refused(without(OFFER, lambda ln: ln.startswith("a=ice-pwd:")), "no_ice")


@case("17 m-lines or a 300-character ice-pwd -> 4013 oversize (under the 16 KiB limit), counted")
def _():
    o = many_mlines(OFFER, 17)
    expect(o.count("\r\nm=") == 17 and len(o) < 12000, "17 m-lines, %d bytes" % len(o))
    expect_refused(o, "oversize")
    expect_refused(long_pwd(OFFER), "oversize")


@case("an offer over the 16 KiB message limit -> 4002 before the parser; nothing counted")
def _():
    big = OFFER + "a=x-pad:%s\r\n" % ("y" * 9000)
    expect_refused(big, "decode error: message over 16 KiB", code=4002)


@case("a NUL in the SDP -> 4002 (the JSON decoder refuses \\u0000); nothing counted")
def _():
    raw = json.dumps({"op": 1, "d": {"protocol": "webrtc", "sdp": OFFER.replace("s=-", "s=\0")}})
    expect("\\u0000" in raw, "the NUL is escaped")
    expect_refused(None, "decode error", code=4002, raw=raw)


@case("a video-only offer -> 4013 no_audio; setup:passive -> bad_setup; no rtcp-mux; counted")
def _():
    o = video_only(OFFER)
    expect("m=audio" not in o and "m=video" in o, "video-only offer")
    expect_refused(o, "no_audio")
    expect_refused(OFFER.replace("a=setup:actpass", "a=setup:passive"), "bad_setup")
    expect_refused(without(OFFER, lambda ln: ln == "a=rtcp-mux"), "no_rtcp_mux")


# ---- STUN -------------------------------------------------------------------------------------
COOKIE = 0x2112A442
USERNAME, MI, FP, XMA, ERR, UNKNOWN = 0x0006, 0x0008, 0x8028, 0x0020, 0x0009, 0x000A
PRIORITY, USE_CAND, CONTROLLING, CONTROLLED = 0x0024, 0x0025, 0x802A, 0x8029


def attr(t, v):
    return struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)


def stun(body, txid=None, mtype=0x0001, key=None, fingerprint=True, mi_len=20):
    """A STUN message: header, `body` (attributes), MESSAGE-INTEGRITY with `key` (RFC 5389 §15.4:
    HMAC-SHA1 over the message up to it, the header length covering it), FINGERPRINT (§15.5)."""
    txid = txid or bytes(rng.getrandbits(8) for _ in range(12))
    msg = body
    if key is not None:
        hdr = struct.pack("!HHI", mtype, len(msg) + 4 + mi_len, COOKIE) + txid
        mac = hmac.new(key, hdr + msg, hashlib.sha1).digest()
        msg += attr(MI, (mac * 2)[:mi_len])
    if fingerprint:
        hdr = struct.pack("!HHI", mtype, len(msg) + 8, COOKIE) + txid
        crc = (zlib.crc32(hdr + msg) ^ 0x5354554E) & 0xFFFFFFFF
        msg += attr(FP, struct.pack("!I", crc))
    return struct.pack("!HHI", mtype, len(msg), COOKIE) + txid + msg


def binding(ufrag, pwd, extra=b"", username=None, **kw):
    body = attr(USERNAME, (username or "%s:abcd" % ufrag).encode())
    body += attr(PRIORITY, struct.pack("!I", 1853817087))
    body += attr(CONTROLLING, struct.pack("!Q", 0x1122334455667788)) + extra
    return stun(body, key=pwd.encode() if pwd is not None else None, **kw)


def parse_stun(b):
    """(type, txid, {attr type: value}, [(type, offset)])"""
    expect(len(b) >= 20, "short STUN answer %r" % b)
    mtype, ln, cookie = struct.unpack("!HHI", b[:8])
    expect(cookie == COOKIE and ln == len(b) - 20, "STUN answer header %r" % b[:8])
    attrs, order, off = {}, [], 20
    while off < len(b):
        t, n = struct.unpack("!HH", b[off:off + 4])
        attrs[t] = b[off + 4:off + 4 + n]
        order.append((t, off))
        off += 4 + n + (-n % 4)
    return mtype, b[8:20], attrs, order


def verify_answer(b, pwd):
    """The answer's FINGERPRINT, and MESSAGE-INTEGRITY with pwd if present."""
    mtype, txid, attrs, order = parse_stun(b)
    expect(order and order[-1][0] == FP, "FINGERPRINT last: %r" % order)
    fp_off = order[-1][1]
    hdr = struct.pack("!HHI", mtype, fp_off + 8 - 20, COOKIE) + txid
    crc = (zlib.crc32(hdr + b[20:fp_off]) ^ 0x5354554E) & 0xFFFFFFFF
    expect(struct.unpack("!I", attrs[FP])[0] == crc, "answer FINGERPRINT")
    if MI in attrs:
        mi_off = [o for t, o in order if t == MI][0]
        hdr = struct.pack("!HHI", mtype, mi_off + 24 - 20, COOKIE) + txid
        expect(hmac.new(pwd.encode(), hdr + b[20:mi_off], hashlib.sha1).digest() == attrs[MI],
               "answer MESSAGE-INTEGRITY with the ice-pwd")
    return mtype, txid, attrs


def ask(sock, dst, pkt, timeout=2.0):
    """Sends pkt, returns the answer or None within timeout."""
    sock.settimeout(timeout)
    sock.sendto(pkt, dst)
    try:
        return sock.recvfrom(2048)[0]
    except socket.timeout:
        return None


def error_code(attrs):
    v = attrs.get(ERR, b"\0\0\0\0")
    return (v[2] & 7) * 100 + v[3]


def clients_forwarding():
    return mv(metrics(), PACKETS, direction="out")


@case("a valid offer is answered; STUN with bad credentials is refused, the right one succeeds; "
      "malformed STUN and DTLS garbage are dropped and counted; the worker keeps serving others")
def _():
    # two voxclients (srtp) in another channel of the same (only) worker, talking throughout
    ch = snowflake()
    users = [snowflake() for _ in range(2)]
    freqs = (523, 784)
    duration = 8
    t0 = time.monotonic()
    cs = [VoxClient("--rpc", "http://127.0.0.1:%d" % node.rpc_port, "--rpc-secret-file",
                    secret_file, "--guild", G, "--channel", ch, "--user", u, "--session",
                    "s" + u, "--freq", fr, "--duration", duration) for u, fr in zip(users, freqs)]
    base = clients_forwarding()
    wait_until(lambda: clients_forwarding() > base + 50, 10, 0.1,
               "the voxclients' media being forwarded")

    vc, m = select_webrtc(OFFER)
    try:
        expect(isinstance(m, dict) and m.get("op") == 4, "valid offer -> %r" % (m,))
        d = m["d"]
        # the fixture's first audio section is sendrecv: it receives slot 0 (docs/webrtc.md)
        expect(d["protocol"] == "webrtc" and [s["mid"] for s in d["slots"]] == ["0", "1", "2"],
               "description %r" % {k: d[k] for k in d if k != "sdp"})
        ans = d["sdp"]
        ufrag = re.search(r"a=ice-ufrag:(\S+)", ans).group(1)
        pwd = re.search(r"a=ice-pwd:(\S+)", ans).group(1)
        cand = re.search(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", ans)
        expect(re.fullmatch(r"[0-9a-f]{8}", ufrag) and len(pwd) >= 22 and cand,
               "answer ufrag %r pwd %r candidate %r" % (ufrag, pwd, cand))
        expect("a=ice-lite" in ans and "a=setup:passive" in ans, "ICE-lite, passive")
        dst = (cand.group(1), int(cand.group(2)))
        other = "%08x" % ((int(ufrag, 16) + 1) & 0xFFFFFFFF)

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.1", 0))
        try:
            m0 = metrics()
            n_refused = 0
            # refused with an error response (RFC 8489 §9.1.3, RFC 8445 §7.3.1.1)
            answered = [
                ("wrong MESSAGE-INTEGRITY", binding(ufrag, "another-password-0123456789"), 401,
                 False),
                ("unknown ufrag", binding(other, pwd), 401, False),
                ("no MESSAGE-INTEGRITY", binding(ufrag, None), 400, False),
                ("unknown ufrag, no MESSAGE-INTEGRITY", binding(other, None), 400, False),
                ("no USERNAME", stun(attr(PRIORITY, b"\0\0\0\1"), key=pwd.encode()), 400,
                 False),
                ("unknown comprehension-required attribute",
                 binding(ufrag, pwd, extra=attr(0x0077, b"\x01\x02\x03")), 420, True),
                ("ICE-CONTROLLED alone",
                 stun(attr(USERNAME, ("%s:abcd" % ufrag).encode()) +
                      attr(CONTROLLED, b"\0" * 8), key=pwd.encode()), 487, True),
            ]
            for what, pkt, code, with_mi in answered:
                b = ask(s, dst, pkt)
                expect(b is not None, "%s: no answer" % what)
                mtype, txid, attrs = verify_answer(b, pwd)
                expect(mtype == 0x0111 and txid == pkt[8:20] and error_code(attrs) == code,
                       "%s: answer type %#x code %d, expected error %d" % (
                           what, mtype, error_code(attrs), code))
                expect((MI in attrs) == with_mi, "%s: MESSAGE-INTEGRITY %s" % (
                    what, "missing" if with_mi else "present in an unauthenticated answer"))
                if code == 420:
                    expect(attrs.get(UNKNOWN) == b"\x00\x77", "420 lists 0x0077: %r" % attrs)
                n_refused += 1
            # dropped without an answer
            good = binding(ufrag, pwd)
            bad_fp = bytearray(good)
            bad_fp[-1] ^= 1
            long_len = bytearray(good)
            long_len[2:4] = struct.pack("!H", len(good) - 20 + 4)
            odd_len = bytearray(good)
            odd_len[2:4] = struct.pack("!H", len(good) - 20 - 2)
            bad_cookie = bytearray(good)
            bad_cookie[4] ^= 0xFF
            past_end = stun(struct.pack("!HH", USERNAME, 900) + b"x" * 12, fingerprint=False)
            absurd = stun(attr(USERNAME, b"\xff" * 600) + attr(PRIORITY, b"\0" * 3) +
                          struct.pack("!HH", 0xC057, 0xFFF0), fingerprint=False)
            success = stun(attr(XMA, b"\0\x01" + b"\0" * 6), mtype=0x0101, key=pwd.encode())
            indication = stun(b"", mtype=0x0011)
            dropped = [
                ("no FINGERPRINT", binding(ufrag, pwd, fingerprint=False)),
                ("unknown ufrag, no FINGERPRINT", binding(other, pwd, fingerprint=False)),
                ("unknown ufrag, an Allocate request (not Binding)",
                 stun(attr(USERNAME, ("%s:abcd" % other).encode()), mtype=0x0003,
                      key=pwd.encode())),
                ("an Allocate request (not Binding)",
                 stun(attr(USERNAME, ("%s:abcd" % ufrag).encode()), mtype=0x0003,
                      key=pwd.encode())),
                ("wrong FINGERPRINT", bytes(bad_fp)),
                ("truncated by 4", good[:-4]),
                ("truncated to the header", good[:20]),
                ("truncated to 19 bytes", good[:19]),
                ("length past the datagram", bytes(long_len)),
                ("length not a multiple of 4", bytes(odd_len)),
                ("wrong magic cookie", bytes(bad_cookie)),
                ("an attribute running past the end", past_end),
                ("absurd attributes (600-byte USERNAME, 3-byte PRIORITY, length 0xFFF0)", absurd),
                ("MESSAGE-INTEGRITY of 16 bytes", binding(ufrag, pwd, mi_len=16)),
                ("a Binding success response", success),
                ("a Binding indication", indication),
                ("an over-long datagram (1,600 bytes)", good + b"\0" * 1500),
            ]
            # all of them, then an authenticated request as a fence: the worker handles one
            # socket's datagrams in order, so an answer to any of them would come before the
            # fence's (not counted below: the ok one is the fence)
            for what, pkt in dropped:
                s.sendto(pkt, dst)
            fence = binding(ufrag, pwd)
            b = ask(s, dst, fence)
            expect(b is not None and b[8:20] == fence[8:20],
                   "the first answer after the dropped datagrams is not the fence's: %r (%s)" % (
                       b, [w for w, p in dropped if b and len(p) >= 20 and p[8:20] == b[8:20]]))
            # the counters: each refused and dropped STUN datagram counted once (the 1,600-byte
            # one is cut at the worker's 1,500-byte MTU and counted as malformed, not as STUN)
            n_stun_dropped = len(dropped) - 1
            want = n_refused + n_stun_dropped
            m1 = wait_until(lambda: (lambda x: x if mv(x, STUN, result="refused") -
                                     mv(m0, STUN, result="refused") >= want else None)(metrics()),
                            3, 0.05, "%d refused STUN requests counted" % want)
            expect(mv(m1, STUN, result="refused") - mv(m0, STUN, result="refused") == want and
                   mv(m1, DROPS, reason="stun") - mv(m0, DROPS, reason="stun") == want and
                   mv(m1, STUN, result="ok") == mv(m0, STUN, result="ok") + 1,
                   "refused %+g (want %d), drops{stun} %+g, ok %+g besides the fence" % (
                       mv(m1, STUN, result="refused") - mv(m0, STUN, result="refused"), want,
                       mv(m1, DROPS, reason="stun") - mv(m0, DROPS, reason="stun"),
                       mv(m1, STUN, result="ok") - mv(m0, STUN, result="ok") - 1))
            expect(mv(m1, DROPS, reason="malformed") - mv(m0, DROPS, reason="malformed") == 1,
                   "the over-long datagram counted as malformed")

            # DTLS garbage from an address that never passed a STUN check
            m0 = m1
            for _i in range(200):
                stranger.sendto(bytes([rng.randint(20, 63)]) +
                                bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))), dst)
            m1 = wait_until(lambda: (lambda x: x if mv(x, DROPS, reason="dtls") -
                                     mv(m0, DROPS, reason="dtls") >= 200 else None)(metrics()),
                            3, 0.05, "200 DTLS drops counted")
            expect(mv(m1, DROPS, reason="dtls") - mv(m0, DROPS, reason="dtls") == 200,
                   "drops{dtls} %+g" % (mv(m1, DROPS, reason="dtls") -
                                        mv(m0, DROPS, reason="dtls")))

            # the right MESSAGE-INTEGRITY: success, XOR-MAPPED-ADDRESS = our socket
            m0 = metrics()
            req = binding(ufrag, pwd, extra=attr(USE_CAND, b""))
            b = ask(s, dst, req)
            expect(b is not None, "authenticated Binding request: no answer")
            mtype, txid, attrs = verify_answer(b, pwd)
            expect(mtype == 0x0101 and txid == req[8:20] and MI in attrs,
                   "authenticated request -> type %#x attrs %r" % (mtype, sorted(attrs)))
            xma = attrs[XMA]
            port = struct.unpack("!H", xma[2:4])[0] ^ (COOKIE >> 16)
            ip = socket.inet_ntoa(struct.pack("!I", struct.unpack("!I", xma[4:8])[0] ^ COOKIE))
            expect(xma[1] == 1 and (ip, port) == s.getsockname(),
                   "XOR-MAPPED-ADDRESS %s:%d, our socket %r" % (ip, port, s.getsockname()))
            m1 = wait_until(lambda: (lambda x: x if mv(x, STUN, result="ok") >
                                     mv(m0, STUN, result="ok") else None)(metrics()),
                            3, 0.05, "the ok STUN request counted")
            expect(mv(m1, STUN, result="ok") - mv(m0, STUN, result="ok") == 1 and
                   mv(m1, STUN, result="refused") == mv(m0, STUN, result="refused"),
                   "ok %+g refused %+g" % (mv(m1, STUN, result="ok") - mv(m0, STUN, result="ok"),
                                           mv(m1, STUN, result="refused") -
                                           mv(m0, STUN, result="refused")))

            # DTLS garbage from the checked address is dropped and counted before its DTLS
            # server sees it: the handshake neither fails nor completes, STUN is still answered
            m0 = m1
            for _i in range(200):
                # (first byte 20-63, random rest: it frames as DTLS records with a chance of
                # about 1 in 2,800, version byte 254 and a fitting length included; the seed is
                # fixed and none does)
                s.sendto(bytes([rng.randint(20, 63)]) +
                         bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))), dst)
            # a consent check after the garbage (the datagrams arrive in order on loopback)
            b = ask(s, dst, binding(ufrag, pwd))
            expect(b is not None and verify_answer(b, pwd)[0] == 0x0101,
                   "consent check after the garbage -> %r" % (b,))
            m1 = metrics()
            dd = mv(m1, DROPS, reason="dtls") - mv(m0, DROPS, reason="dtls")
            df = mv(m1, DTLS, result="failed") - mv(m0, DTLS, result="failed")
            dc = mv(m1, DTLS, result="connected") - mv(m0, DTLS, result="connected")
            expect(dd == 200 and df == 0 and dc == 0,
                   "garbage from the checked address: drops{dtls} %+g of 200, handshakes "
                   "failed %+g connected %+g" % (dd, df, dc))
        finally:
            s.close()
            stranger.close()

        # the voxclients kept talking: forwarding goes on, and each heard the other
        mid = clients_forwarding()
        expect(time.monotonic() - t0 < duration - 1,
               "the bad input took %.1fs: not within the clients' call" % (time.monotonic() - t0))
        wait_until(lambda: clients_forwarding() > mid + 20, 5, 0.1,
                   "forwarding after the bad input")
        for u, fr, c in zip(users, freqs, cs):
            rc, rep = c.wait(duration + 20)
            expect(rc == 0 and rep, "client %s exit %r, stderr %r" % (u, rc, (c.err or "")[-300:]))
            o = [x for x in users if x != u][0]
            of = freqs[users.index(o)]
            sp = rep["speakers"].get(o)
            expect(sp and sp["packets"] >= duration * 50 * 0.8 and sp["freq_hz"] is not None and
                   abs(sp["freq_hz"] - of) < 3,
                   "client %s (%d Hz) heard %r, expected %s at %d Hz" % (u, fr, rep["speakers"],
                                                                         o, of))
            slots = [x for x in rep["slots"] if x["packets"] > 0]
            expect(len(slots) == 1 and slots[0]["lost"] == 0, "client %s slots %r" % (u, slots))
            expect(rep["rx"]["auth_fail"] == 0, "client %s rx %r" % (u, rep["rx"]))
        expect(node.alive(), "voxd is alive")
    finally:
        vc.close()


finish()
