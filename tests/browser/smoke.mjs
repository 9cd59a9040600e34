// tests/browser/smoke.mjs — browser tests that need no media transport from the node (they run
// in every `make check`):
//  - the browser itself: Debian chromium plays an in-page oscillator through a loopback pair of
//    RTCPeerConnections, getStats shows inbound packets/samples/energy and the analyser finds the
//    frequency (the measuring tools of webrtc.mjs, proven without the node);
//  - the demo page like a person uses it: type a name, click Join (GET /dev/grant), the voice
//    WebSocket reaches Ready (the page says so, the person is listed), click Leave. The page's
//    Select Protocol is held back by a WebSocket route so the node (which closes an unknown
//    protocol with 4012 until its webrtc transport lands) keeps the session open;
//  - voxclient.js reports a refused token: join() rejects, state "closed" with 4004.
import {
  artifact, expect, failed, grant, launch, preparePage, sleep, testCase, VOICE_URL, waitFor,
  watchPage,
} from "./lib.mjs";

const browser = await launch();
const ctx = await browser.newContext({ viewport: { width: 900, height: 760 } });
try {
  await testCase("chromium: an oscillator through a loopback peer connection is heard (stats, analyser)", async () => {
    const page = await ctx.newPage();
    const errs = watchPage(page, "loopback");
    await preparePage(page);
    await page.goto(VOICE_URL + "/demo.html");
    const r = await page.evaluate(async () => {
      const ac = new AudioContext({ sampleRate: 48000 });
      await ac.resume();
      const osc = ac.createOscillator();
      osc.frequency.value = 523;
      const dst = ac.createMediaStreamDestination();
      const g = ac.createGain();
      g.gain.value = 0.3;
      osc.connect(g).connect(dst);
      osc.start();
      const a = new RTCPeerConnection(), b = new RTCPeerConnection();
      const gathered = (pc) => new Promise((res) => {
        if (pc.iceGatheringState === "complete") return res();
        pc.addEventListener("icegatheringstatechange", () => {
          if (pc.iceGatheringState === "complete") res();
        });
      });
      b.addTransceiver("audio", { direction: "recvonly" });
      // b offers (like the client: recvonly), a answers sendonly; candidates inside the SDPs
      await b.setLocalDescription(await b.createOffer());
      await gathered(b);
      await a.setRemoteDescription(b.localDescription);
      const ta = a.getTransceivers()[0];
      await ta.sender.replaceTrack(dst.stream.getAudioTracks()[0]);
      ta.direction = "sendonly";
      await a.setLocalDescription(await a.createAnswer());
      await gathered(a);
      await b.setRemoteDescription(a.localDescription);
      const track = b.getTransceivers()[0].receiver.track;
      const el = document.createElement("audio");
      el.muted = false;
      el.srcObject = new MediaStream([track]);
      el.play().catch(() => {});
      const an = ac.createAnalyser();
      an.fftSize = 8192;
      an.smoothingTimeConstant = 0;
      ac.createMediaStreamSource(new MediaStream([track])).connect(an);
      await new Promise((res) => setTimeout(res, 1500));
      const s1 = await window.inboundAudio(b);
      await new Promise((res) => setTimeout(res, 1000));
      const s2 = await window.inboundAudio(b);
      const conn = b.connectionState;
      const sp = window.spectrum(an, [523, 440]);
      a.close();
      b.close();
      await ac.close();
      return { s1, s2, sp, conn };
    });
    const { s1, s2, sp, conn } = r;
    const dE = s2.energy - s1.energy, dT = s2.duration - s1.duration;
    expect(s2.packets - s1.packets > 30, `packets ${s1.packets} -> ${s2.packets} (connection ${conn}; ${errs.join("; ")})`);
    expect(s2.samples - s1.samples > 30000, `samples ${s1.samples} -> ${s2.samples}`);
    expect(dT > 0 && dE / dT > 1e-3, `mean energy ${dE / dT} (need > 1e-3); spectrum ${JSON.stringify(sp)}`);
    expect(Math.abs(sp.peakHz - 523) < 15 && sp.share[523] > 0.5 && sp.share[440] < 0.05,
           `spectrum ${JSON.stringify(sp)}; ${errs.join("; ")}`);
    await page.close();
  });

  await testCase("demo page: type a name, Join gets a grant, the voice WebSocket reaches Ready, Leave", async () => {
    const page = await ctx.newPage();
    const errs = watchPage(page, "demo");
    const seen = { toNode: [], fromNode: [], closed: false };
    await page.routeWebSocket(/\/voice$/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        let op = null;
        try { op = JSON.parse(m).op; } catch { /* forwarded as is */ }
        seen.toNode.push(op);
        if (op === 1) seen.select = { raw: String(m), d: JSON.parse(m).d };
        if (op === 1) return; // Select Protocol held back (see the top of this file)
        server.send(m);
      });
      server.onMessage((m) => {
        try { seen.fromNode.push(JSON.parse(m).op); } catch { seen.fromNode.push(null); }
        ws.send(m);
      });
      ws.onClose((code, reason) => { seen.closed = true; server.close({ code, reason }); });
    });
    await page.goto(VOICE_URL + "/");
    expect((await page.title()).includes("voxd"), "title " + (await page.title()));
    const name = page.getByLabel("Your name");
    await name.fill("smoke alice");
    await page.getByLabel("Channel").fill("smoke-room");
    const grantResp = page.waitForResponse((r) => r.url().includes("/dev/grant"), { timeout: 10000 });
    await page.getByRole("button", { name: "Join" }).click();
    const gr = await grantResp;
    expect(gr.status() === 200, `/dev/grant -> ${gr.status()}`);
    const g = await gr.json();
    const uid = g.result.voice_state.user_id;
    await waitFor(async () => (await page.locator("#state").getAttribute("data-state")) === "ready",
                  10000, `the page to say Ready (state ${await page.locator("#state").textContent()}, ` +
                  `log ${JSON.stringify(await page.evaluate(() => window.demo.log))}, ${errs.join("; ")})`);
    expect((await page.locator("#state").textContent()).includes("signed in as smoke alice"),
           "state text " + (await page.locator("#state").textContent()));
    const me = page.locator(`#participants li[data-user-id="${uid}"]`);
    await waitFor(async () => (await me.count()) === 1 &&
                  (await me.textContent()).includes("smoke alice"), 5000, "smoke alice in the list");
    expect(seen.fromNode.includes(8) && seen.fromNode.includes(2), `ops from the node ${seen.fromNode}`);
    expect(seen.toNode[0] === 0 || seen.toNode.includes(0), `ops to the node ${seen.toNode}`);
    expect(seen.toNode.includes(1), "the client sent no Select Protocol after Ready");
    // the offer follows docs/protocol.md "Media: the webrtc transport"
    const sel = seen.select.d;
    expect(sel.protocol === "webrtc" && typeof sel.sdp === "string", "select " + seen.select.raw.slice(0, 200));
    expect(seen.select.raw.length < 16384, `Select Protocol is ${seen.select.raw.length} bytes (limit 16 KiB)`);
    const sections = sel.sdp.split(/\r\n(?=m=)/).slice(1);
    const want = [["0", "sendonly"], ["1", "recvonly"], ["2", "recvonly"], ["3", "recvonly"]];
    expect(sections.length === 4, `${sections.length} m-sections`);
    sections.forEach((m, i) => {
      expect(m.startsWith("m=audio ") && m.includes(`\r\na=mid:${want[i][0]}\r\n`) &&
             m.includes(`\r\na=${want[i][1]}\r\n`) && m.includes("\r\na=rtcp-mux\r\n") &&
             /a=rtpmap:\d+ opus\/48000\/2/.test(m) &&
             m.includes("urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
             `m-section ${i} is not audio mid ${want[i][0]} ${want[i][1]} with opus, rtcp-mux, level: ${m.slice(0, 300)}`);
    });
    expect(/\r\na=group:BUNDLE 0 1 2 3\r\n/.test(sel.sdp), "no BUNDLE 0 1 2 3");
    expect(await page.getByRole("button", { name: "Leave" }).isEnabled(), "Leave disabled");
    expect(await page.getByRole("button", { name: "Join" }).isDisabled(), "Join enabled while in");
    await page.screenshot({ path: artifact("demo-smoke-ready.png") });
    await sleep(300);
    await page.getByRole("button", { name: "Leave" }).click();
    await waitFor(async () => (await page.locator("#state").getAttribute("data-state")) === "closed",
                  5000, "state closed after Leave");
    expect((await page.locator("#state").textContent()).trim() === "left",
           "state text " + (await page.locator("#state").textContent()));
    expect(await page.getByRole("button", { name: "Join" }).isEnabled(), "Join not back");
    expect((await page.locator("#participants li").count()) === 0, "list not emptied");
    await waitFor(() => seen.closed, 5000, "the voice WebSocket to close");
    expect(errs.length === 0, errs.join("; "));
    await page.close();
  });

  await testCase("voxclient.js: a refused token closes with 4004, join() rejects, state closed", async () => {
    const page = await ctx.newPage();
    await page.goto(VOICE_URL + "/demo.html");
    const g = await grant("smoke bob", "smoke-room");
    const r = await page.evaluate(async ({ endpoint, token }) => {
      const { VoxClient } = await import("/voxclient.js");
      const ac = new AudioContext();
      const dst = ac.createMediaStreamDestination();
      const c = new VoxClient({ endpoint, token: token.slice(0, -4) + "AAAA",
                                track: dst.stream.getAudioTracks()[0] });
      const states = [];
      c.addEventListener("state", (e) => states.push(e.detail));
      let err = null;
      try { await c.join(); } catch (e) { err = { code: e.code, message: e.message }; }
      return { states, err, final: c.state };
    }, { endpoint: g.voice_server.endpoint, token: g.voice_server.token });
    expect(r.err && r.err.code === 4004, "join() " + JSON.stringify(r.err));
    const last = r.states[r.states.length - 1];
    expect(r.final === "closed" && last.code === 4004 && /authentication failed/.test(last.reason),
           "states " + JSON.stringify(r.states));
    expect(r.states[0].state === "connecting", "first state " + JSON.stringify(r.states[0]));
    await page.close();
  });
} finally {
  await browser.close();
}
process.exit(failed() ? 1 : 0);
