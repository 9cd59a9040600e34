// tests/browser/client.mjs — web/voxclient.js against a stand-in node, so the client's side of
// the webrtc contract is tested before (and independently of) the node's webrtc transport. The
// voice WebSocket is answered by a Playwright WebSocket route (Hello, Ready, Session
// Description, Speaking, Client Connect, Heartbeat ACK, Resumed) and the media by a second page
// whose RTCPeerConnection answers the client's offer: mid 0 recvonly, mids 1..3 sendonly with
// oscillators at 300, 500, 700 Hz (slot i on mid i+1). Not ICE-lite (a browser answers), but the
// same offer, answer shape and slot table as docs/protocol.md "Media: the webrtc transport".
import {
  expect, Fail, failed, launch, PAGE_HARNESS, preparePage, sleep, testCase, VOICE_URL, waitFor,
  watchPage,
} from "./lib.mjs";

const SLOT_HZ = [300, 500, 700];
const browser = await launch();
const ctx = await browser.newContext();
try {
  const media = await ctx.newPage();
  const mediaErrs = watchPage(media, "stand-in media");
  await preparePage(media);
  await media.goto(VOICE_URL + "/demo.html");
  await media.evaluate(async (hz) => {
    const ac = new AudioContext({ sampleRate: 48000 });
    await ac.resume();
    window.M = { ac, tracks: hz.map((f) => {
      const o = ac.createOscillator();
      o.frequency.value = f;
      const g = ac.createGain();
      g.gain.value = 0.3;
      const d = ac.createMediaStreamDestination();
      o.connect(g).connect(d);
      o.start();
      return d.stream.getAudioTracks()[0];
    }) };
    window.M.answer = async (offer) => {
      const pc = new RTCPeerConnection();
      window.M.pc = pc;
      await pc.setRemoteDescription({ type: "offer", sdp: offer });
      for (const t of pc.getTransceivers()) {
        if (t.mid === "0") {
          t.direction = "recvonly";
          // played (Chrome counts decoded samples and energy at playout)
          const el = document.createElement("audio");
          el.srcObject = new MediaStream([t.receiver.track]);
          el.play().catch(() => {});
          window.M.el = el;
        } else {
          await t.sender.replaceTrack(window.M.tracks[Number(t.mid) - 1]);
          t.direction = "sendonly";
        }
      }
      await pc.setLocalDescription(await pc.createAnswer());
      if (pc.iceGatheringState !== "complete") {
        await new Promise((res) => pc.addEventListener("icegatheringstatechange", () => {
          if (pc.iceGatheringState === "complete") res();
        }));
      }
      const sdp = pc.localDescription.sdp;
      const slots = sdp.split(/\r\n(?=m=)/).slice(1).map((m) => ({
        mid: (m.match(/a=mid:(\S+)/) || [])[1], ssrc: Number((m.match(/a=ssrc:(\d+)/) || [])[1]) }))
        .filter((x) => x.mid !== "0").map((x) => ({ slot: Number(x.mid) - 1, ssrc: x.ssrc, mid: x.mid }));
      return { sdp, slots };
    };
  }, SLOT_HZ);

  // the stand-in voice WebSocket
  const node = { sockets: 0, ops: [], resumes: 0 };
  const client = await ctx.newPage();
  const errs = watchPage(client, "client");
  await preparePage(client);
  await client.routeWebSocket(/\/voice$/, (ws) => {
    node.sockets++;
    const send = (op, d) => ws.send(JSON.stringify({ op, d }));
    const slotTable = () => {
      send(5, { slot: 0, user_id: "7", connection_id: "c7" });
      send(5, { slot: 1, user_id: "8", connection_id: "c8" });
      send(5, { slot: 2, user_id: null, connection_id: null });
      send(12, { user_id: "7", connection_id: "c7" });
      send(12, { user_id: "8", connection_id: "c8" });
    };
    ws.onMessage(async (m) => {
      const { op, d } = JSON.parse(m);
      node.ops.push(op);
      if (op === 3) send(6, d);
      else if (op === 0) send(2, { connection_id: "cSelf", user_id: "6", session_id: "s6",
                                   resume_token: "tok" });
      else if (op === 1) {
        const a = await media.evaluate((o) => window.M.answer(o), d.sdp);
        send(4, { protocol: "webrtc", sdp: a.sdp, slots: a.slots });
        slotTable();
      } else if (op === 7) {
        node.resume = d;
        send(9, {});
        slotTable();
      }
    });
    send(8, { heartbeat_interval: 5000 });
  });
  await client.goto(VOICE_URL + "/demo.html");
  const endpoint = new URL(VOICE_URL).host;

  await testCase("client: offer answered, slot i plays mid i+1, events, the stand-in hears the client", async () => {
    const ready = await client.evaluate(PAGE_HARNESS, { endpoint, token: "t", freq: 440 });
    expect(ready.connection_id === "cSelf", "ready " + JSON.stringify(ready));
    await waitFor(() => client.evaluate(() => H.client.state === "connected"), 15000,
                  "the client connected (" + errs.concat(mediaErrs).join("; ") + ")");
    await sleep(1500);
    const r = await client.evaluate((hz) => ({
      slots: H.client.slots.map((s) => ({ slot: s.slot, mid: s.mid, user_id: s.user_id })),
      spectra: [0, 1, 2].map((i) => H.slots[i] && window.spectrum(H.slots[i].an, hz)),
      tracks: H.events.filter((e) => e.type === "track").map((e) => [e.d.slot, e.d.mid]),
      roster: H.client.participants().map((p) => p.connection_id),
      speaking: H.events.filter((e) => e.type === "speaking").length,
      n: H.client.negotiations,
    }), SLOT_HZ);
    expect(JSON.stringify(r.tracks) === '[[0,"1"],[1,"2"],[2,"3"]]', "track events " + JSON.stringify(r.tracks));
    SLOT_HZ.forEach((f, i) => {
      const sp = r.spectra[i];
      expect(sp && sp.share[f] > 0.5, `slot ${i} does not play ${f} Hz: ${JSON.stringify(sp)}`);
    });
    expect(r.slots[0].user_id === "7" && r.slots[1].user_id === "8" && r.slots[2].user_id === null,
           "slot table " + JSON.stringify(r.slots));
    expect(JSON.stringify(r.roster) === '["cSelf","c7","c8"]', "roster " + JSON.stringify(r.roster));
    expect(r.speaking === 3 && r.n === 1, `speaking events ${r.speaking}, negotiations ${r.n}`);
    const heard = await media.evaluate(async () => {
      const st = await window.inboundAudio(window.M.pc);
      return st;
    });
    expect(heard.packets > 40 && heard.samples > 0, "the stand-in got " + JSON.stringify(heard));
    expect(node.ops[0] === 0 && node.ops.includes(1) && node.ops.includes(3),
           "ops to the node " + node.ops);
  });

  await testCase("client: a dropped WebSocket is resumed with Ready's ids, media untouched", async () => {
    expect(await client.evaluate(() => H.client._dropSocket()), "no socket to drop");
    await waitFor(() => client.evaluate(() => H.client.state === "connected" && H.client.resumes === 1),
                  10000, "resumed and connected");
    expect(node.sockets === 2, `${node.sockets} sockets`);
    expect(JSON.stringify(node.resume) ===
           '{"connection_id":"cSelf","session_id":"s6","resume_token":"tok"}',
           "resume " + JSON.stringify(node.resume));
    const r = await client.evaluate(() => ({
      states: H.states, n: H.client.negotiations, pc: H.client.pc.connectionState,
      roster: H.client.participants().length }));
    expect(r.n === 1 && r.pc === "connected" && r.roster === 3 &&
           JSON.stringify(r.states.slice(-2)) === '["resuming","connected"]', JSON.stringify(r));
  });

  await testCase("client: mute silences the sent track, leave closes everything", async () => {
    const before = await media.evaluate(() => window.inboundAudio(window.M.pc));
    await client.evaluate(() => H.client.setMuted(true));
    await sleep(1200);
    const a = await media.evaluate(() => window.inboundAudio(window.M.pc));
    await sleep(1000);
    const b = await media.evaluate(() => window.inboundAudio(window.M.pc));
    const dE = b.energy - a.energy, dT = b.duration - a.duration;
    expect(dT > 0 && dE / dT < 1e-6, `muted but energy ${dE / dT} (before ${JSON.stringify(before)})`);
    await client.evaluate(() => H.client.leave());
    const r = await client.evaluate(() => ({ state: H.client.state, pc: H.client.pc.signalingState,
                                             last: H.events.filter((e) => e.type === "state").pop().d }));
    expect(r.state === "closed" && r.pc === "closed" && r.last.code === 1000, JSON.stringify(r));
  });
} catch (e) {
  if (!(e instanceof Fail)) throw e;
} finally {
  await browser.close();
}
process.exit(failed() ? 1 : 0);
