#!/usr/bin/python3
"""
An independent SRTP peer against the relay (issue 4): GStreamer's srtpenc/srtpdec (libsrtp behind
GStreamer's own key handling, caps and RTP stack; nothing of ours) talk to voxd's media worker with
the keys the voice WebSocket hands out. That proves our SRTP, key encoding (base64 of master key ||
salt), SSRC/slot handling and RTP framing are the standard ones, not merely symmetric with our own
client code.

  G1 (AES_CM_128_HMAC_SHA1_80) sends 550 Hz, G2 (AEAD_AES_128_GCM) sends 770 Hz (Opus, PT 111,
  the RFC 6464 audio level from rtphdrextclientaudiolevel -- with V=0 on every packet, as
  GStreamer does no VAD: heard by its level, D25 -- and SRTCP sender reports from rtpsession),
  each from ONE UDP socket that its receiving half (udpsrc ! srtpdec ! rtpopusdepay ! opusdec ! appsink) shares, because the relay
  sends to the address it latched from the first authenticated packet. Each must decode the
  other's tone (Goertzel on the last second) and not its own; /metrics shows no auth drop.
  G3 then sends 990 Hz with the right SSRC but a wrong key: every datagram it sends is counted as an
  auth drop, and neither G1 nor G2 decodes 990 Hz.

Only 127.0.0.1; about 5 s (every wait bounded, 10 s at most); every pipeline is set to NULL and the node is stopped. If
GStreamer or one of its elements is missing the script FAILS (scripts/install-deps.sh installs it).
"""
import base64
import math
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import case, expect, finish, not_ok, ok, on_finish, snowflake, start_node  # noqa: E402

AES = "AES_CM_128_HMAC_SHA1_80"
GCM = "AEAD_AES_128_GCM"
# GStreamer's names for a mode's cipher and auth (srtpenc properties, srtpdec caps); GCM
# authenticates itself (auth "null"); the key is master key || salt: 30 bytes, 28 for GCM
GST_MODE = {AES: ("aes-128-icm", "hmac-sha1-80"), GCM: ("aes-128-gcm", "null")}
RATE = 16000  # analysis rate of the decoded audio (after opusdec's 48 kHz)
F1, F2, F3 = 550, 770, 990  # G1, G2, and the wrong-key sender G3
OTHER = (330, 1210)  # unrelated frequencies that must stay quiet
ELEMENTS = ("audiotestsrc", "audioconvert", "audioresample", "capsfilter", "level", "opusenc",
            "rtpopuspay", "rtphdrextclientaudiolevel", "rtpsession", "srtpenc", "funnel",
            "udpsink", "udpsrc", "srtpdec", "rtpopusdepay", "opusdec", "appsink")

try:
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtp", "1.0")
    from gi.repository import Gio, Gst, GstRtp  # noqa: E402
    Gst.init(None)
except Exception as e:  # CI installs it: a missing GStreamer is a failure, not a skip
    not_ok("GStreamer through PyGObject",
           "%s: %s (install python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 "
           "gstreamer1.0-plugins-{base,good,bad}: scripts/install-deps.sh)" % (type(e).__name__, e))
    finish()
_missing = [f for f in ELEMENTS if Gst.ElementFactory.find(f) is None]
if _missing:
    not_ok("GStreamer elements present", "missing %s (gstreamer1.0-plugins-base/-good/-bad: "
           "scripts/install-deps.sh)" % ", ".join(_missing))
    finish()
ok("GStreamer %s with srtpenc/srtpdec, opus, rtp, udp" % Gst.version_string().split()[-1])

T0 = time.monotonic()
node = start_node("--pending-timeout", "60s")
G = snowflake()
CHANNEL = snowflake()
_peers = []
_voices = []


def _cleanup():
    while _peers:
        _peers.pop().stop()
    while _voices:
        _voices.pop().stop()


on_finish(_cleanup)


# ---- the voice WebSocket, kept open and heartbeated ----------------------------------------------
class Voice:
    """voice.connect + Identify + Select Protocol srtp with `mode`; then a thread heartbeats every
    second and keeps every message the node sends (Speaking, Client Connect, ...)."""

    def __init__(self, user, mode=AES):
        r = node.rpc_ok("voice.connect", {"guild_id": G, "channel_id": CHANNEL, "user_id": user,
                                          "session_id": "s"})
        self.user = user
        self.ws = node.voice()
        ready = self.ws.identify(r["voice_server"]["token"])
        expect(isinstance(ready, dict) and ready.get("op") == 2, "identify -> %r" % (ready,))
        self.ws.send({"op": 1, "d": {"protocol": "srtp", "modes": [mode]}})
        desc = self.ws.recv(5)
        expect(isinstance(desc, dict) and desc.get("op") == 4, "select protocol -> %r" % (desc,))
        self.d = desc["d"]
        expect(self.d["mode"] == mode and self.d["address"] == "127.0.0.1" and
               self.d["payload_type"] == 111, "session description %r" % self.d)
        self.msgs = []
        self.closed = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        _voices.append(self)

    def _run(self):
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                self.ws.send({"op": 3, "d": n})
            except Exception as e:
                self.closed = "send: %s" % e
                return
            until = time.monotonic() + 1.0
            while not self._stop.is_set() and time.monotonic() < until:
                m = self.ws.recv(0.2)
                if isinstance(m, tuple):
                    self.closed = m
                    return
                if m is not None:
                    self.msgs.append(m)

    def slot_speaker(self):
        """{slot ssrc: user_id} from the latest Speaking of each slot."""
        by_slot = {}
        for m in self.msgs:
            if isinstance(m, dict) and m.get("op") == 5 and "slot" in m.get("d", {}):
                by_slot[m["d"]["slot"]] = m["d"]["user_id"]
        return {s["ssrc"]: by_slot.get(s["slot"]) for s in self.d["slots"]}

    def stop(self):
        self._stop.set()
        self._t.join(3)
        self.ws.close()


# ---- a GStreamer participant ---------------------------------------------------------------------
def mk(factory, **props):
    e = Gst.ElementFactory.make(factory)
    expect(e is not None, "cannot make GStreamer element %s" % factory)
    for k, v in props.items():
        k = k.rstrip("_").replace("_", "-")
        if isinstance(v, str) and k not in ("host",):
            Gst.util_set_object_arg(e, k, v)  # enums by nick
        else:
            e.set_property(k, v)
    return e


def key_hex(b64):
    return base64.b64decode(b64).hex()


def srtp_caps(b64key, mode):
    cipher, auth = GST_MODE[mode]
    return Gst.Caps.from_string(
        "application/x-srtp, srtp-key=(buffer)%s, srtp-cipher=(string)%s, srtp-auth=(string)%s, "
        "srtcp-cipher=(string)%s, srtcp-auth=(string)%s" % (key_hex(b64key), cipher, auth,
                                                          cipher, auth))


def rtp_fields(buf, ext_id):
    """(SSRC, audio level byte or None) of an RTP packet in a GstBuffer (RFC 3550 header,
    RFC 8285 one-byte extension block)."""
    b = buf.extract_dup(0, buf.get_size())
    if len(b) < 12:
        return None, None
    ssrc = struct.unpack_from("!I", b, 8)[0]
    off = 12 + 4 * (b[0] & 0x0F)
    if not b[0] & 0x10 or len(b) < off + 4:
        return ssrc, None
    profile, words = struct.unpack_from("!HH", b, off)
    i, end = off + 4, min(off + 4 + 4 * words, len(b))
    while profile == 0xBEDE and i < end:
        if b[i] == 0:
            i += 1
            continue
        eid, ln = b[i] >> 4, (b[i] & 0x0F) + 1
        if eid == 15:
            break
        if eid == ext_id and ln == 1 and i + 1 < end:
            return ssrc, b[i + 1]
        i += 1 + ln
    return ssrc, None


class Peer:
    """One pipeline: an Opus tone sent through srtpenc from a UDP socket that a udpsrc ! srtpdec !
    opusdec ! appsink branch receives on (receive=False: send only)."""

    def __init__(self, name, desc, freq, send_key=None, receive=True):
        self.name = name
        self.freq = freq
        self.ssrc = desc["ssrc"]
        self.level_id = desc["audio_level_ext_id"]
        self.sent_rtp = self.sent_rtcp = self.sent_datagrams = self.rtp_with_level = 0
        self.last_level = None  # the audio-level byte (V flag | -dBov) of the last RTP sent
        self.recv_rtp = {}  # ssrc -> packets after srtpdec
        self.recv_with_level = 0
        self.key_requests = []
        self.samples = bytearray()
        self.lock = threading.Lock()
        self.errors = []

        # one UDP socket for both directions (the relay answers the latched source address)
        self.sock = Gio.Socket.new(Gio.SocketFamily.IPV4, Gio.SocketType.DATAGRAM,
                                   Gio.SocketProtocol.UDP)
        self.sock.bind(Gio.InetSocketAddress.new_from_string("127.0.0.1", 0), False)
        self.port = self.sock.get_local_address().get_port()

        p = self.pipe = Gst.Pipeline.new(name)
        # -- send: tone -> Opus -> RTP (+ audio level ext) -> rtpsession (SR) -> SRTP/SRTCP -> UDP
        src = mk("audiotestsrc", freq=float(freq), is_live=True, volume=0.5, wave="sine")
        chain = [src, mk("audioconvert"), mk("audioresample"),
                 mk("capsfilter", caps=Gst.Caps.from_string("audio/x-raw,rate=48000,channels=1")),
                 mk("level", audio_level_meta=True, post_messages=False),
                 mk("opusenc"), mk("rtpopuspay", pt=111, ssrc=self.ssrc)]
        pay = chain[-1]
        ext = GstRtp.RTPHeaderExtension.create_from_uri("urn:ietf:params:rtp-hdrext:ssrc-audio-level")
        expect(ext is not None, "no GStreamer element for the RFC 6464 audio-level extension")
        ext.set_id(desc["audio_level_ext_id"])
        pay.emit("add-extension", ext)
        sess = mk("rtpsession", rtcp_min_interval=500 * Gst.MSECOND)
        self.mode = desc["mode"]
        cipher, auth = GST_MODE[self.mode]
        enc = mk("srtpenc", rtp_cipher=cipher, rtp_auth=auth, rtcp_cipher=cipher, rtcp_auth=auth)
        enc.set_property("key", Gst.Buffer.new_wrapped(base64.b64decode(send_key or
                                                                        desc["send_key"])))
        fun = mk("funnel")
        sink = mk("udpsink", socket=self.sock, close_socket=False, host="127.0.0.1",
                  port=desc["port"], sync=False, async_=False)
        for e in chain + [sess, enc, fun, sink]:
            p.add(e)
        for a, b in zip(chain, chain[1:]):
            expect(a.link(b), "%s: cannot link %s to %s" % (name, a.name, b.name))
        expect(pay.get_static_pad("src").link(sess.request_pad_simple("send_rtp_sink")) ==
               Gst.PadLinkReturn.OK, "payloader -> rtpsession")
        expect(sess.get_static_pad("send_rtp_src").link(enc.request_pad_simple("rtp_sink_0")) ==
               Gst.PadLinkReturn.OK, "rtpsession -> srtpenc (rtp)")
        expect(sess.request_pad_simple("send_rtcp_src").link(enc.request_pad_simple("rtcp_sink_0"))
               == Gst.PadLinkReturn.OK, "rtpsession -> srtpenc (rtcp)")
        expect(enc.get_static_pad("rtp_src_0").link(fun.request_pad_simple("sink_%u")) ==
               Gst.PadLinkReturn.OK, "srtpenc rtp -> funnel")
        expect(enc.get_static_pad("rtcp_src_0").link(fun.request_pad_simple("sink_%u")) ==
               Gst.PadLinkReturn.OK, "srtpenc rtcp -> funnel")
        expect(fun.link(sink), "funnel -> udpsink")
        enc.get_static_pad("rtp_sink_0").add_probe(Gst.PadProbeType.BUFFER, self._on_rtp_out)
        enc.get_static_pad("rtcp_sink_0").add_probe(Gst.PadProbeType.BUFFER, self._on_rtcp_out)
        sink.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, self._on_datagram_out)

        # -- receive: UDP -> srtpdec (key for any slot SSRC) -> Opus -> S16LE 16 kHz mono samples
        if receive:
            self.recv_key = desc["recv_key"]
            self.slot_ssrcs = {s["ssrc"] for s in desc["slots"]}
            usrc = mk("udpsrc", socket=self.sock, close_socket=False, caps=Gst.Caps.from_string(
                "application/x-srtp, media=(string)audio, clock-rate=(int)48000, "
                "encoding-name=(string)OPUS, payload=(int)111"))
            dec = mk("srtpdec")
            dec.connect("request-key", self._on_request_key)
            rchain = [mk("rtpopusdepay"), mk("opusdec"), mk("audioconvert"), mk("audioresample"),
                      mk("capsfilter", caps=Gst.Caps.from_string(
                          "audio/x-raw,format=S16LE,rate=%d,channels=1" % RATE)),
                      mk("appsink", emit_signals=True, sync=False, max_buffers=0)]
            for e in [usrc, dec] + rchain:
                p.add(e)
            expect(usrc.get_static_pad("src").link(dec.get_static_pad("rtp_sink")) ==
                   Gst.PadLinkReturn.OK, "udpsrc -> srtpdec")
            expect(dec.get_static_pad("rtp_src").link(rchain[0].get_static_pad("sink")) ==
                   Gst.PadLinkReturn.OK, "srtpdec -> rtpopusdepay")
            for a, b in zip(rchain, rchain[1:]):
                expect(a.link(b), "%s: cannot link %s to %s" % (name, a.name, b.name))
            dec.get_static_pad("rtp_src").add_probe(Gst.PadProbeType.BUFFER, self._on_rtp_in)
            rchain[-1].connect("new-sample", self._on_sample)
        self.bus = p.get_bus()

    # probes and callbacks run on GStreamer's streaming threads
    def _on_rtp_out(self, pad, info):
        _ssrc, level = rtp_fields(info.get_buffer(), self.level_id)
        with self.lock:
            self.sent_rtp += 1
            if level is not None:
                self.rtp_with_level += 1
                self.last_level = level
        return Gst.PadProbeReturn.OK

    def _on_rtcp_out(self, pad, info):
        with self.lock:
            self.sent_rtcp += 1
        return Gst.PadProbeReturn.OK

    def _on_datagram_out(self, pad, info):
        with self.lock:
            self.sent_datagrams += 1
        return Gst.PadProbeReturn.OK

    def _on_rtp_in(self, pad, info):
        ssrc, level = rtp_fields(info.get_buffer(), self.level_id)
        with self.lock:
            self.recv_rtp[ssrc] = self.recv_rtp.get(ssrc, 0) + 1
            if level is not None:
                self.recv_with_level += 1
        return Gst.PadProbeReturn.OK

    def _on_request_key(self, dec, ssrc):
        with self.lock:
            self.key_requests.append(ssrc)
        if ssrc not in self.slot_ssrcs:
            return None  # not one of our slots: srtpdec drops it
        return srtp_caps(self.recv_key, self.mode)

    def _on_sample(self, sink):
        s = sink.emit("pull-sample")
        if s is not None:
            buf = s.get_buffer()
            ok_, m = buf.map(Gst.MapFlags.READ)
            if ok_:
                with self.lock:
                    self.samples += bytes(m.data)
                buf.unmap(m)
        return Gst.FlowReturn.OK

    def start(self):
        r = self.pipe.set_state(Gst.State.PLAYING)
        expect(r != Gst.StateChangeReturn.FAILURE, "%s: pipeline does not start" % self.name)
        if self not in _peers:
            _peers.append(self)

    def check_bus(self):
        while True:
            m = self.bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING)
            if m is None:
                break
            if m.type == Gst.MessageType.ERROR:
                err, dbg = m.parse_error()
                self.errors.append("%s: %s (%s)" % (m.src.get_name(), err.message, dbg))
        expect(not self.errors, "%s: GStreamer error %s" % (self.name, self.errors[:2]))

    def samples_count(self):
        with self.lock:
            return len(self.samples) // 2

    def last_second(self, since=0):
        """The last second of decoded audio after sample index `since` (as floats in -1..1)."""
        with self.lock:
            data = bytes(self.samples[since * 2:])
        n = len(data) // 2
        expect(n >= RATE, "%s decoded only %.2f s of audio (need 1 s): received RTP %s" % (
            self.name, n / RATE, self.recv_rtp))
        xs = struct.unpack("<%dh" % RATE, data[(n - RATE) * 2:n * 2])
        return [x / 32768.0 for x in xs]

    def stop(self):
        self.pipe.set_state(Gst.State.NULL)
        self.pipe.get_state(3 * Gst.SECOND)
        try:
            self.sock.close()
        except Exception:
            pass


# ---- analysis ------------------------------------------------------------------------------------
def tone_fraction(xs, f):
    """Share of the signal's energy at f (Goertzel over the whole block; 1.0 for a pure tone
    with a whole number of cycles, ~0 for other whole-Hz frequencies)."""
    n = len(xs)
    c = 2 * math.cos(2 * math.pi * f / RATE)
    s1 = s2 = 0.0
    for x in xs:
        s1, s2 = x + c * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - c * s1 * s2
    total = sum(x * x for x in xs)
    return 2 * power / (n * total) if total > 0 else 0.0


def spectrum(xs):
    rms = math.sqrt(sum(x * x for x in xs) / len(xs))
    return rms, {f: tone_fraction(xs, f) for f in (F1, F2, F3) + OTHER}


def fmt(rms, fr):
    return "rms %.3f, energy share %s" % (rms, ", ".join("%d Hz %.1e" % (f, v)
                                                          for f, v in sorted(fr.items())))


def hears(peer, want, since=0, absent=()):
    """peer's last decoded second is mostly `want` Hz: ≥ 0.5 of its energy there, < 1 % at its
    own frequency, at every frequency in `absent` and at the unrelated ones."""
    rms, fr = spectrum(peer.last_second(since))
    print("# %s decodes %s" % (peer.name, fmt(rms, fr)), flush=True)
    expect(rms > 0.05, "%s: decoded audio is near silence (%s)" % (peer.name, fmt(rms, fr)))
    expect(fr[want] > 0.5, "%s: %d Hz is not dominant (%s)" % (peer.name, want, fmt(rms, fr)))
    for f in (peer.freq,) + tuple(absent) + OTHER:
        expect(fr[f] < 0.01, "%s: %d Hz present (%s)" % (peer.name, f, fmt(rms, fr)))
    return fr


def metrics():
    """{(family, labels-string): value} of the media families."""
    out = {}
    for line in node.metrics_text()[0].splitlines():
        if line.startswith("voxd_media_") and " " in line:
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def wait_for(pred, timeout, what, poll=(), interval=0.1, detail=None):
    deadline = time.monotonic() + timeout
    while True:
        for p in poll:
            p.check_bus()
        v = pred()
        if v:
            return v
        expect(time.monotonic() < deadline, "timed out after %.1f s waiting for %s%s" % (
            timeout, what, "; " + detail() if detail else ""))
        time.sleep(interval)


AUTH = 'voxd_media_drops_total{reason="auth"}'
UNKNOWN = 'voxd_media_drops_total{reason="unknown_source"}'
PIN = 'voxd_media_packets_total{direction="in"}'
POUT = 'voxd_media_packets_total{direction="out"}'

state = {}


@case("two GStreamer peers (srtpenc/srtpdec, keys from the voice WebSocket; G1 AES_CM_128_HMAC_"
      "SHA1_80, G2 AEAD_AES_128_GCM) hear each other through the relay: G1 decodes G2's 770 Hz, "
      "G2 decodes G1's 550 Hz; nothing fails auth")
def _():
    u1, u2 = snowflake(), snowflake()
    v1, v2 = Voice(u1, AES), Voice(u2, GCM)
    g1 = Peer("G1", v1.d, F1)
    g2 = Peer("G2", v2.d, F2)
    state.update(v1=v1, v2=v2, g1=g1, g2=g2)
    t0 = time.monotonic()
    g1.start()
    g2.start()
    # both latched and each has decoded a few seconds of the other
    wait_for(lambda: g1.samples_count() >= 2.5 * RATE and g2.samples_count() >= 2.5 * RATE,
             10, "2.5 s of decoded audio on both", poll=(g1, g2),
             detail=lambda: "G1 sent %d datagrams, decoded %d samples, received %s; G2 %d, %d, %s; "
             "key requests %s %s; relay %s" % (
                 g1.sent_datagrams, g1.samples_count(), g1.recv_rtp, g2.sent_datagrams,
                 g2.samples_count(), g2.recv_rtp, g1.key_requests, g2.key_requests,
                 {k: v for k, v in metrics().items() if v and ("drops" in k or "packets" in k)}))
    print("# both decoded 2.5 s after %.2f s; G1 sent %d RTP (%d with the audio level, last "
          "0x%02x) + %d RTCP, G2 %d (%d, 0x%02x) + %d" % (
              time.monotonic() - t0, g1.sent_rtp, g1.rtp_with_level, g1.last_level or 0,
              g1.sent_rtcp, g2.sent_rtp, g2.rtp_with_level, g2.last_level or 0, g2.sent_rtcp),
          flush=True)
    hears(g1, F2)
    hears(g2, F1)
    # what each received came on a slot SSRC that the node's Speaking assigned to the other
    for me, other, v in ((g1, u2, v1), (g2, u1, v2)):
        ssrcs = set(me.recv_rtp)
        owners = v.slot_speaker()
        expect(len(ssrcs) == 1 and owners.get(next(iter(ssrcs))) == other,
               "%s received on %s; Speaking says %s" % (me.name, me.recv_rtp, owners))
        expect(me.recv_with_level > 0, "%s: the relay dropped the audio-level extension" % me.name)
        expect(v.closed is None, "%s's voice WebSocket closed: %r" % (me.name, v.closed))
    for me in (g1, g2):
        expect(me.sent_rtcp > 0, "%s sent no SRTCP yet" % me.name)
        expect(me.rtp_with_level > 0, "%s: no RTP with the audio-level extension" % me.name)
    m = metrics()
    print("# metrics: %s" % {k: v for k, v in m.items() if "drops" in k and v or "packets" in k},
          flush=True)
    expect(m.get(AUTH) == 0, "auth drops %s: GStreamer's SRTP/SRTCP did not authenticate" %
           m.get(AUTH))
    expect(m.get(UNKNOWN) == 0, "unknown_source drops %s (SSRC of RTP or RTCP)" % m.get(UNKNOWN))
    expect(m.get(PIN, 0) > 0 and m.get(POUT, 0) > 0, "media packets in/out %s" % m)


@case("negative control: a GStreamer sender with the right SSRC but a wrong key is not heard; "
      "each of its datagrams is an auth drop")
def _():
    expect("g1" in state, "the first case did not set up G1/G2")
    g1, g2 = state["g1"], state["g2"]
    v3 = Voice(snowflake())
    good = base64.b64decode(v3.d["send_key"])
    wrong = base64.b64encode(bytes(b ^ 0x5A for b in good[:16]) + good[16:]).decode()  # key only
    auth0 = metrics().get(AUTH)
    g3 = Peer("G3", v3.d, F3, send_key=wrong, receive=False)
    n1, n2 = g1.samples_count(), g2.samples_count()
    g3.start()
    wait_for(lambda: g1.samples_count() >= n1 + 1.5 * RATE and
             g2.samples_count() >= n2 + 1.5 * RATE and g3.sent_rtcp > 0, 10,
             "1.5 s more audio with G3 sending an RTCP packet too", poll=(g1, g2, g3))
    g3.pipe.set_state(Gst.State.NULL)  # stop it, then count
    g3.pipe.get_state(3 * Gst.SECOND)
    sent = g3.sent_datagrams
    expect(sent >= 50, "G3 sent only %d datagrams" % sent)
    deadline = time.monotonic() + 3
    while metrics().get(AUTH) - auth0 < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    got = metrics().get(AUTH) - auth0
    print("# G3 sent %d datagrams (%d RTP, %d RTCP) with a wrong key: %d auth drops" % (
        sent, g3.sent_rtp, g3.sent_rtcp, got), flush=True)
    expect(got == sent, "auth drops rose by %d for %d datagrams sent with a wrong key" % (got, sent))
    hears(g1, F2, since=n1, absent=(F3,))
    hears(g2, F1, since=n2, absent=(F3,))
    for me in (g1, g2):
        expect(set(me.recv_rtp) <= me.slot_ssrcs and len(me.recv_rtp) == 1,
               "%s received %s" % (me.name, me.recv_rtp))
    for v in (state["v1"], state["v2"], v3):
        expect(v.closed is None, "a voice WebSocket closed: %r" % (v.closed,))


_cleanup()
print("# took %.1f s" % (time.monotonic() - T0), flush=True)
finish()
