#!/usr/bin/python3
"""tests/browser/webrtc_chromium.py — the webrtc module against a real headless Chromium.

A page (served here on 127.0.0.1) opens an RTCPeerConnection with the fake microphone, one
sendrecv audio transceiver and `recv` recvonly ones, a video transceiver and a data channel, posts
its offer; we run build/tests/browser/wrtc_peer (ICE-lite STUN, DTLS server, SRTP with the exported
keys, all from webrtc/) on it and return its answer. The page reports setRemoteDescription, the
connection state, its tracks and getStats(); the peer reports what it saw. Checked per case: the
answer is accepted, ICE and DTLS connect, the browser's SRTP authenticates with our `in` key and
carries the audio level, consent checks continue after DTLS, and every slot the answer gave an
m-section arrives on its own track (200 packets each) — with recv=0 only slot 0 can.

    make browser                       (or: BUILD=build /usr/bin/python3 tests/browser/webrtc_chromium.py)

Prints "ok - …" / "not ok - …" lines like the unit tests; skips (exit 0) without chromium.
Loopback only. Chromium runs as root here, hence --no-sandbox.
"""
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEER = os.path.join(ROOT, os.environ.get("BUILD", "build"), "tests/browser/wrtc_peer")
SLOTS = 3

PAGE = """<!doctype html><html><body><script>
(async () => {
  const result = {tracks: []};
  try {
    const q = new URLSearchParams(location.search);
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    const pc = new RTCPeerConnection();
    pc.addTrack(stream.getAudioTracks()[0], stream);
    for (let i = 0; i < Number(q.get('recv')); i++) pc.addTransceiver('audio', {direction: 'recvonly'});
    pc.addTransceiver('video');
    pc.createDataChannel('d');
    pc.ontrack = e => result.tracks.push({mid: e.transceiver.mid, streams: e.streams.map(s => s.id)});
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const r = await fetch('/offer', {method: 'POST', body: offer.sdp});
    const answer = await r.text();
    try { await pc.setRemoteDescription({type: 'answer', sdp: answer}); result.srd = 'ok'; }
    catch (e) { result.srd = String(e); }
    const t0 = Date.now();
    while (!['connected', 'failed'].includes(pc.connectionState) && Date.now() - t0 < 10000)
      await new Promise(res => setTimeout(res, 50));
    result.connectionState = pc.connectionState;
    result.connectMs = Date.now() - t0;
    await new Promise(res => setTimeout(res, 5000));
    result.inbound = [];
    (await pc.getStats()).forEach(s => {
      if (s.type === 'inbound-rtp')
        result.inbound.push({ssrc: s.ssrc, mid: s.mid, packets: s.packetsReceived, track: s.trackIdentifier || ''});
      if (s.type === 'transport') { result.srtpCipher = s.srtpCipher; result.dtlsState = s.dtlsState; }
    });
  } catch (e) { result.error = String(e); }
  await fetch('/result', {method: 'POST', body: JSON.stringify(result)});
})();
</script></body></html>"""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def run_case(chromium, recv, tmp):
    """One page load; returns (browser result dict, peer summary dict, peer log)."""
    state = {"peer": None, "result": None}
    done = threading.Event()
    log_path = os.path.join(tmp, "peer-%d.log" % recv)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, body, ctype="text/plain"):
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.reply(PAGE.encode(), "text/html")

        def do_POST(self):
            data = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/offer":
                p = subprocess.Popen([PEER, str(SLOTS), "14"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(log_path, "wb"))
                state["peer"] = p
                p.stdin.write(data)
                p.stdin.close()
                self.reply(p.stdout.read())
            else:
                state["result"] = json.loads(data)
                self.reply(b"")
                done.set()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/?recv=%d" % (srv.server_address[1], recv)
    browser = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
         "--user-data-dir=" + os.path.join(tmp, "profile-%d" % recv),
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        done.wait(40)
        if state["peer"]:
            state["peer"].wait(timeout=30)
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
        srv.shutdown()
    log = open(log_path).read() if os.path.exists(log_path) else ""
    summary = {}
    for line in log.splitlines():
        if line.startswith("summary "):
            summary = dict(kv.split("=", 1) for kv in line.split()[1:])
    return state["result"] or {}, summary, log


def check_case(chromium, recv, tmp):
    name = "webrtc_chromium:recv%d" % recv
    res, peer, log = run_case(chromium, recv, tmp)
    fails = []

    def need(cond, what):
        if not cond:
            fails.append(what)

    need(res.get("srd") == "ok", "setRemoteDescription: %s" % res.get("srd", res.get("error")))
    need(res.get("connectionState") == "connected", "connectionState %s" % res.get("connectionState"))
    need(peer.get("dtls") == "connected", "peer DTLS %s (%s)" % (peer.get("dtls"), peer.get("fail")))
    need(int(peer.get("use_candidate", 0)) > 0, "no USE-CANDIDATE check answered")
    need(int(peer.get("stun_after_dtls", 0)) > 0, "no consent check after DTLS")
    need(int(peer.get("stun_refused", 1)) == 0, "STUN refusals: %s" % peer.get("stun_refused"))
    need(int(peer.get("rtp_ok", 0)) >= 200 and peer.get("rtp_ok") == peer.get("rtp_in"),
         "browser RTP authenticated %s of %s" % (peer.get("rtp_ok"), peer.get("rtp_in")))
    need(int(peer.get("level_max", 0)) <= 127 and peer.get("level_min") != "128",
         "no audio level read")
    need(int(peer.get("rtcp_ok", 0)) > 0, "no SRTCP authenticated")
    usable = min(SLOTS, 1 + recv)
    by_ssrc = {s["ssrc"]: s for s in res.get("inbound", [])}
    for i in range(usable):
        s = by_ssrc.get(1111 * (i + 1))
        need(s is not None and s["packets"] == 200 and s["track"] and s["mid"] == str(i),
             "slot %d on mid %d: %s" % (i, i, s))
    mids = sorted(t["mid"] for t in res.get("tracks", []) if "voxd" in t["streams"])
    need(mids == [str(i) for i in range(usable)], "tracks of stream voxd on mids %s" % mids)
    detail = "connected in %s ms, %s, browser RTP %s/%s authenticated, %s SRTCP, slots %s" % (
        res.get("connectMs"), res.get("srtpCipher"), peer.get("rtp_ok"), peer.get("rtp_in"),
        peer.get("rtcp_ok"), [by_ssrc.get(1111 * (i + 1), {}).get("packets") for i in range(SLOTS)])
    if fails:
        print("not ok - %s: %s" % (name, "; ".join(fails)))
        for line in log.splitlines()[-5:]:
            print("# peer: " + line)
        return False
    print("ok - %s (%s)" % (name, detail))
    return True


def main():
    chromium = find_chromium()
    if not chromium:
        print("# skipped: no chromium (apt-get install chromium)")
        return 0
    if not os.access(PEER, os.X_OK):
        print("not ok - webrtc_chromium: %s missing (make)" % PEER)
        return 1
    with tempfile.TemporaryDirectory(prefix="voxd-browser-") as tmp:
        ok = check_case(chromium, 0, tmp)
        ok = check_case(chromium, SLOTS, tmp) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
