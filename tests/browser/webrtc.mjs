// tests/browser/webrtc.mjs — browser pages talking through the node's `webrtc` transport
// (docs/protocol.md "Media: the webrtc transport"), run by test_browser.py. Pages A (440 Hz) and B (660 Hz) stay in one call
// throughout; the cases run in order on it:
//   1. A and B hear each other: getStats inbound packets, decoded samples and energy grow; the
//      analyser on what each page plays finds the other's frequency (and not its own);
//   2. A's voice WebSocket drops: the client resumes (Resume -> Resumed), audio goes on, the SDP
//      is not renegotiated, the roster is rebuilt;
//   3. C (880 Hz) joins later: A and B hear it without any renegotiation, C hears both;
//   4. a server mute of C over /rpc (voice.set_server_state): A and B no longer hear 880 Hz;
//   5. C leaves: A and B get the Client Disconnect (the node runs --transport-reap 5s);
//   6. a voxclient (native srtp transport, 1000 Hz) joins: A hears it, it hears A (only when
//      VOXCLIENT_BIN names an executable);
//   7. the call of A and B, held for at least 45 s, is still connected (consent freshness);
//   8. the demo page in two tabs, driven like a person: names typed, Join clicked, both listed
//      in both tabs, screenshots in tests/artifacts/, Leave seen by the other tab.
import { spawn } from "node:child_process";
import fs from "node:fs";
import {
  artifact, expect, Fail, failed, grant, launch, PAGE_HARNESS, preparePage, rpc,
  sleep, testCase, VOICE_URL, waitFor, watchPage,
} from "./lib.mjs";

const CHANNEL = "webrtc-room";
const browser = await launch();
const ctx = await browser.newContext();

async function joinPage(name, freq) {
  const page = await ctx.newPage();
  const errs = watchPage(page, name);
  await preparePage(page);
  await page.goto(VOICE_URL + "/demo.html");
  const g = await grant(name, CHANNEL);
  const ready = await page.evaluate(PAGE_HARNESS, {
    endpoint: g.voice_server.endpoint, token: g.voice_server.token, freq });
  return { page, name, freq, errs, uid: g.voice_state.user_id, cid: ready.connection_id,
           channel: g.voice_state.channel_id };
}

const inPage = (p, fn, arg) => p.page.evaluate(fn, arg);
const state = (p) => inPage(p, () => ({
  state: H.client.state, pc: H.client.pc.connectionState, states: H.states,
  n: H.client.negotiations,
  last: H.events.filter((e) => e.type === "state").pop()?.d }));

async function connected(p, ms = 20000) {
  await waitFor(async () => {
    const s = await state(p);
    if (s.state === "closed" || s.state === "disconnected") {
      throw new Fail(`${p.name} ${s.state}: ${JSON.stringify(s.last)}; states ${s.states}`);
    }
    return s.state === "connected";
  }, ms, `${p.name} connected (${p.errs.join("; ")})`);
}

// the share of each frequency in what p plays, polled until pred(share) holds
async function hearsUntil(p, freqs, pred, ms, what) {
  let last = null;
  try {
    return await waitFor(async () => {
      last = await inPage(p, (f) => H.hear(f), freqs);
      return pred(last.share) ? last : null;
    }, ms, what);
  } catch (e) {
    throw new Fail(`${p.name}: ${what}; last spectrum ${JSON.stringify(last)}`);
  }
}

async function inboundGrows(p) {
  const s1 = await inPage(p, () => H.inbound());
  await sleep(1500);
  const s2 = await inPage(p, () => H.inbound());
  const dP = s2.packets - s1.packets, dS = s2.samples - s1.samples;
  const dE = s2.energy - s1.energy, dT = s2.duration - s1.duration;
  expect(dP > 40, `${p.name}: inbound packets ${s1.packets} -> ${s2.packets} in 1.5 s`);
  expect(dS > 40000, `${p.name}: decoded samples ${s1.samples} -> ${s2.samples} in 1.5 s`);
  expect(dT > 0 && dE / dT > 1e-3, `${p.name}: mean energy ${dT > 0 ? dE / dT : "n/a"} (> 1e-3)`);
  return s2;
}

const rosterHas = (p, cid) => inPage(p, (c) => H.client.participants().some((x) => x.connection_id === c), cid);

let A, B, C, call = false, carolIn = false, tCall = 0;
try {
  await testCase("two pages join one channel and hear each other (getStats, analyser)", async () => {
    [A, B] = await Promise.all([joinPage("alice", 440), joinPage("bob", 660)]);
    await Promise.all([connected(A), connected(B)]);
    call = true;
    tCall = Date.now();
    await inboundGrows(A);
    await inboundGrows(B);
    await hearsUntil(A, [660, 440], (s) => s[660] > 0.3 && s[440] < 0.05, 8000, "A hears 660 Hz, not itself");
    await hearsUntil(B, [440, 660], (s) => s[440] > 0.3 && s[660] < 0.05, 8000, "B hears 440 Hz, not itself");
    expect(await rosterHas(A, B.cid) && await rosterHas(B, A.cid), "rosters do not list each other");
    const onSlot = await inPage(A, (u) => H.client.slots.some((s) => s.user_id === u), B.uid);
    expect(onSlot, "A's Speaking table does not name bob on any slot");
  });

  await testCase("a dropped voice WebSocket is resumed: audio goes on, no renegotiation", async () => {
    expect(call, "no call of A and B");
    expect(await inPage(A, () => H.client._dropSocket()), "A had no socket to drop");
    await waitFor(async () => {
      const s = await state(A);
      return s.states.includes("resuming") && s.state === "connected" ? s : null;
    }, 15000, "A resuming then connected");
    const r = await inPage(A, () => ({ resumes: H.client.resumes, n: H.client.negotiations,
                                  sig: H.client.pc.signalingState }));
    expect(r.resumes === 1 && r.n === 1 && r.sig === "stable", "after resume " + JSON.stringify(r));
    await waitFor(() => rosterHas(A, B.cid), 5000, "A's roster rebuilt with bob");
    await inboundGrows(A);
    await hearsUntil(A, [660], (s) => s[660] > 0.3, 5000, "A hears 660 Hz after the resume");
  });

  await testCase("a third page joins later and is heard by the first two without SDP renegotiation", async () => {
    expect(call, "no call of A and B");
    C = await joinPage("carol", 880);
    await connected(C);
    carolIn = true;
    await hearsUntil(A, [660, 880], (s) => s[660] > 0.1 && s[880] > 0.1, 8000, "A hears 660 and 880 Hz");
    await hearsUntil(B, [440, 880], (s) => s[440] > 0.1 && s[880] > 0.1, 8000, "B hears 440 and 880 Hz");
    await hearsUntil(C, [440, 660, 880], (s) => s[440] > 0.1 && s[660] > 0.1 && s[880] < 0.05,
                     8000, "C hears 440 and 660 Hz, not itself");
    for (const p of [A, B]) {
      const r = await inPage(p, () => ({ n: H.client.negotiations, sig: H.client.pc.signalingState }));
      expect(r.n === 1 && r.sig === "stable", `${p.name} renegotiated: ${JSON.stringify(r)}`);
      expect(await rosterHas(p, C.cid), `${p.name} got no Client Connect for carol`);
    }
  });

  await testCase("a server mute over /rpc silences that page for the others", async () => {
    expect(call && carolIn, "no third page");
    await rpc("voice.set_server_state", { guild_id: "1", user_id: C.uid, mute: true });
    await hearsUntil(A, [660, 880], (s) => s[880] < 0.02 && s[660] > 0.2, 6000, "A no longer hears 880 Hz");
    await hearsUntil(B, [440, 880], (s) => s[880] < 0.02 && s[440] > 0.2, 6000, "B no longer hears 880 Hz");
  });

  await testCase("a page leaves and the others get the leave notice", async () => {
    expect(call && carolIn, "no third page");
    const left = (p) => inPage(p, (c) => H.events.some((e) => e.type === "roster" && e.d.left &&
                                                    e.d.left.connection_id === c), C.cid);
    await inPage(C, () => H.client.leave());
    expect((await state(C)).state === "closed", "C not closed after leave()");
    await waitFor(async () => (await left(A)) && (await left(B)), 12000,
                  "Client Disconnect of carol at A and B");
    expect(!(await rosterHas(A, C.cid)) && !(await rosterHas(B, C.cid)), "carol still listed");
    await C.page.close();
  });

  const vcBin = process.env.VOXCLIENT_BIN;
  if (vcBin && fs.existsSync(vcBin)) {
    await testCase("a browser page and a voxclient (srtp) in one channel hear each other", async () => {
      expect(call, "no call of A and B");
      const vcUser = String(200000000000000000n + BigInt(Date.now() % 1000000));
      const args = ["--rpc", process.env.VOXD_RPC_URL, "--rpc-secret-file",
                    process.env.VOXD_RPC_SECRET_FILE, "--guild", "1", "--channel", A.channel,
                    "--user", vcUser, "--session", "s-vc", "--freq", "1000", "--duration", "6",
                    "--no-progress"];
      const vc = spawn(vcBin, args, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "", err = "";
      vc.stdout.on("data", (b) => { out += b; });
      vc.stderr.on("data", (b) => { err += b; });
      const done = new Promise((res) => vc.on("exit", (code) => res(code)));
      const killer = setTimeout(() => vc.kill("SIGKILL"), 20000);
      try {
        await hearsUntil(A, [1000], (s) => s[1000] > 0.1, 8000, "A hears the voxclient's 1000 Hz");
      } finally {
        const code = await done;
        clearTimeout(killer);
        expect(code === 0, `voxclient exit ${code}: ${err.slice(-300)}`);
      }
      const rep = JSON.parse(out.trim().split("\n").pop());
      const sp = rep.speakers && rep.speakers[A.uid];
      expect(sp && Math.abs(sp.freq_hz - 440) < 15,
             `voxclient did not hear alice at 440 Hz: ${JSON.stringify(rep.speakers)}`);
    });
  } else {
    console.log(`# browser + voxclient not run: no voxclient binary (${vcBin || "VOXCLIENT_BIN unset"})`);
  }

  await testCase("a call held for at least 45 s stays connected (consent freshness)", async () => {
    expect(call, "no call of A and B");
    const wait = tCall + 46000 - Date.now();
    if (wait > 0) await sleep(wait);
    for (const p of [A, B]) {
      const s = await state(p);
      const bad = await inPage(p, () => H.events.filter((e) => e.type === "media" &&
        ["failed", "disconnected", "closed"].includes(e.d.connectionState)));
      expect(s.state === "connected" && s.pc === "connected", `${p.name} ${JSON.stringify(s)}`);
      expect(bad.length === 0, `${p.name} media went ${JSON.stringify(bad)}`);
      expect(!s.states.includes("disconnected"), `${p.name} states ${s.states}`);
      await inboundGrows(p);
    }
    await hearsUntil(A, [660], (s) => s[660] > 0.3, 3000, "A still hears 660 Hz");
  });
} finally {
  for (const p of [A, B, C]) if (p && !p.page.isClosed()) await p.page.close().catch(() => {});
}

await testCase("the demo page in two tabs: type names, click Join, both listed in both (screenshots)", async () => {
  const tabs = [];
  for (const name of ["dana", "erik"]) {
    const page = await ctx.newPage();
    await page.setViewportSize({ width: 900, height: 760 });
    const errs = watchPage(page, name);
    await page.goto(VOICE_URL + "/");
    await page.getByLabel("Your name").fill(name);
    await page.getByLabel("Channel", { exact: true }).fill("demo room");
    await page.getByRole("button", { name: "Join" }).click();
    tabs.push({ page, name, errs });
  }
  const st = (t) => t.page.locator("#state").getAttribute("data-state");
  for (const t of tabs) {
    await waitFor(async () => {
      const s = await st(t);
      if (s === "closed" || s === "disconnected") {
        throw new Fail(`${t.name}'s tab: ${await t.page.locator("#state").textContent()}`);
      }
      return s === "connected";
    }, 20000,
                  `${t.name}'s tab connected (state ${await st(t)}; ${t.errs.join("; ")})`);
  }
  for (const t of tabs) {
    await waitFor(async () => {
      const names = await t.page.locator("#participants li .name").allTextContents();
      return names.length === 2 && names.includes("dana") && names.includes("erik");
    }, 10000, `${t.name}'s tab lists dana and erik`);
  }
  await tabs[0].page.screenshot({ path: artifact("demo-two-tabs-dana.png") });
  await tabs[1].page.screenshot({ path: artifact("demo-two-tabs-erik.png") });
  // someone is shown speaking (the fake microphone beeps): at least once within 5 s
  await waitFor(() => tabs[0].page.locator("#participants li.speaking").count(), 5000,
                "a speaking indicator in dana's tab");
  await tabs[1].page.getByRole("button", { name: "Leave" }).click();
  await waitFor(async () => {
    const names = await tabs[0].page.locator("#participants li .name").allTextContents();
    return names.length === 1 && names[0] === "dana";
  }, 12000, "erik gone from dana's list");
  await tabs[0].page.getByRole("button", { name: "Leave" }).click();
  for (const t of tabs) await t.page.close();
});

await browser.close();
process.exit(failed() ? 1 : 0);
