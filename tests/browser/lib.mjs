// tests/browser/lib.mjs — what every browser test script shares: Debian chromium through
// playwright-core, TAP-like output (`ok - name` / `not ok - name: why`, counted by
// tests/run-all.sh), the node's addresses from the environment, and in-page helpers (an
// oscillator as the microphone, analysers on what a page receives, getStats sums).
//
// Environment (set by tests/integration/test_browser.py):
//   VOXD_VOICE_URL   http://127.0.0.1:<voice port>  (the dev site and /voice)
//   VOXD_RPC_URL     http://127.0.0.1:<rpc port>    (the internal RPC, for server mute)
//   VOXD_RPC_SECRET  its bearer secret
//   VOXD_ARTIFACTS   where screenshots go (default tests/artifacts)
//   CHROMIUM         the browser (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

export const VOICE_URL = process.env.VOXD_VOICE_URL || "http://127.0.0.1:8701";
export const RPC_URL = process.env.VOXD_RPC_URL || "http://127.0.0.1:8700";
export const RPC_SECRET = process.env.VOXD_RPC_SECRET || "";
export const ARTIFACTS = process.env.VOXD_ARTIFACTS || "tests/artifacts";
const SCRIPT = path.basename(process.argv[1] || "browser");

let failures = 0;
export function ok(name) {
  console.log(`ok - ${SCRIPT}:${name}`);
}
export function notOk(name, why) {
  failures++;
  let w = String(why && why.stack ? why.message : why).replace(/\s+/g, " ");
  if (w.length > 600) w = w.slice(0, 600) + "...";
  console.log(`not ok - ${SCRIPT}:${name}: ${w}`);
}
export class Fail extends Error {}
export function expect(cond, why) {
  if (!cond) throw new Fail(why);
}
/** Runs one case: ok when fn resolves, not ok with the first failure (later cases still run). */
export async function testCase(name, fn) {
  try {
    await fn();
    ok(name);
    return true;
  } catch (e) {
    notOk(name, e);
    return false;
  }
}
export function failed() {
  return failures;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn() (async ok) until truthy or the deadline; returns its value or throws Fail. A Fail
 *  thrown by fn ends the wait at once; other errors are retried. */
export async function waitFor(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      if (e instanceof Fail) throw e; // a definite failure: no point in waiting
      last = e;
    }
    if (Date.now() >= end) {
      throw new Fail(`timed out after ${ms / 1000}s waiting for ${what}` +
                     (last instanceof Error ? ` (${last.message})` : ""));
    }
    await sleep(100);
  }
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      "--autoplay-policy=no-user-gesture-required",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      // host candidates as addresses, not mDNS names (nothing resolves .local here)
      "--disable-features=WebRtcHideLocalIpsWithMdns",
    ],
  });
}

export async function rpc(method, params) {
  const r = await fetch(RPC_URL + "/rpc", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + RPC_SECRET },
    body: JSON.stringify({ method, params }),
    signal: AbortSignal.timeout(10000),
  });
  const body = await r.json();
  if (r.status !== 200 || !body.result) {
    throw new Fail(`${method} ${JSON.stringify(params)} -> ${r.status} ${JSON.stringify(body)}`);
  }
  return body.result;
}

export async function grant(name, channel) {
  const r = await fetch(`${VOICE_URL}/dev/grant?name=${encodeURIComponent(name)}` +
                        `&channel=${encodeURIComponent(channel)}`,
                        { signal: AbortSignal.timeout(10000) });
  const body = await r.json();
  if (r.status !== 200 || !body.result) {
    throw new Fail(`/dev/grant ${name} -> ${r.status} ${JSON.stringify(body)}`);
  }
  return body.result;
}

export function artifact(name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}

/** Console errors and page errors of a page, kept for failure messages. */
export function watchPage(page, label) {
  const errs = [];
  page.on("pageerror", (e) => errs.push(`${label} pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errs.push(`${label} console: ${m.text()}`);
  });
  return errs;
}

// ---- in the page ------------------------------------------------------------------------------
// Installed in every page before its scripts (preparePage): window.spectrum(analyser, freqs) —
// the peak and each asked frequency's share (±bw Hz) of the spectrum's power; and
// window.inboundAudio(pc) — inbound-rtp audio summed: packets, decoded samples, energy.
const PAGE_TOOLS = `
window.spectrum = (an, freqs, bw = 25) => {
  const bins = new Float32Array(an.frequencyBinCount);
  an.getFloatFrequencyData(bins);
  const hz = an.context.sampleRate / an.fftSize;
  let total = 0, peak = 0, peakHz = 0;
  const share = Object.fromEntries(freqs.map((f) => [f, 0]));
  for (let i = 2; i < bins.length; i++) {
    const p = Math.pow(10, bins[i] / 10);
    total += p;
    if (p > peak) { peak = p; peakHz = i * hz; }
    for (const f of freqs) if (Math.abs(i * hz - f) <= bw) share[f] += p;
  }
  for (const f of freqs) share[f] = total > 0 ? share[f] / total : 0;
  return { peakHz: Math.round(peakHz), totalDb: 10 * Math.log10(total || 1e-30), share };
};
window.inboundAudio = async (pc) => {
  const s = await pc.getStats();
  const o = { packets: 0, samples: 0, energy: 0, duration: 0, n: 0 };
  s.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      o.n++;
      o.packets += r.packetsReceived || 0;
      o.samples += r.totalSamplesReceived || 0;
      o.energy += r.totalAudioEnergy || 0;
      o.duration += r.totalSamplesDuration || 0;
    }
  });
  return o;
};
`;
export async function preparePage(page) {
  await page.addInitScript(PAGE_TOOLS);
}

// ---- the harness in the page ------------------------------------------------------------------------------
// PAGE_HARNESS is evaluated in a page of the dev site: window.H holds an AudioContext, an
// oscillator at `freq` Hz as the microphone track, a VoxClient from /voxclient.js with that track,
// an analyser on each received slot and one on their mix, and an event log.
export const PAGE_HARNESS = async ({ endpoint, token, freq, gain }) => {
  const { VoxClient } = await import("/voxclient.js");
  const ac = new AudioContext({ sampleRate: 48000 });
  await ac.resume();
  const osc = ac.createOscillator();
  osc.frequency.value = freq;
  const g = ac.createGain();
  g.gain.value = gain ?? 0.3;
  const dst = ac.createMediaStreamDestination();
  osc.connect(g).connect(dst);
  osc.start();
  const mix = ac.createAnalyser();
  mix.fftSize = 8192;
  mix.smoothingTimeConstant = 0;
  const H = { ac, osc, mix, freq, slots: {}, events: [], states: [] };
  window.H = H;
  // playback on: Chrome measures totalAudioEnergy at playout, a muted element reports 0
  const client = new VoxClient({ endpoint, token, track: dst.stream.getAudioTracks()[0] });
  H.client = client;
  for (const t of ["state", "ready", "roster", "speaking", "track", "resumed", "media"]) {
    client.addEventListener(t, (e) => {
      const d = { ...e.detail };
      delete d.track;
      delete d.audio;
      H.events.push({ t: Math.round(performance.now()), type: t, d });
      if (t === "state") H.states.push(d.state);
    });
  }
  client.addEventListener("track", (e) => {
    const src = ac.createMediaStreamSource(new MediaStream([e.detail.track]));
    const an = ac.createAnalyser();
    an.fftSize = 8192;
    an.smoothingTimeConstant = 0;
    src.connect(an);
    src.connect(mix);
    H.slots[e.detail.slot] = { src, an };
  });
  H.hear = (freqs) => window.spectrum(mix, freqs);
  H.inbound = () => window.inboundAudio(client.pc);
  await client.join();
  return client.ready;
};
