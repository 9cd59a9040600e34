// demo.js — the development demo page (served by `voxd --dev`): pick a name and a channel, join,
// hear the others, see who is in the channel and who speaks, mute, leave. The grant comes from
// the node's development-only /dev/grant; names from /dev/names. The client is ./voxclient.js.
import { VoxClient } from "/voxclient.js";

const $ = (id) => document.getElementById(id);
const form = $("join-form"), nameIn = $("name"), chanIn = $("channel");
const joinBtn = $("join"), muteBtn = $("mute"), leaveBtn = $("leave");
const stateEl = $("state"), listEl = $("participants"), emptyEl = $("empty"), logEl = $("log");

const SPEAKING_LEVEL = 0.02; // audioLevel (0..1) above which someone counts as speaking
let client = null;
let names = {}; // user_id -> name
let speakingNow = new Set(); // connection ids
let levelTimer = null;

window.demo = { get client() { return client; }, log: [] }; // for tests and the console

try {
  nameIn.value = localStorage.getItem("voxd-demo-name") || "";
} catch { /* storage off */ }

function log(msg) {
  const t = new Date().toISOString().slice(11, 23);
  window.demo.log.push(msg);
  const li = document.createElement("li");
  li.textContent = `${t} ${msg}`;
  logEl.append(li);
  while (logEl.children.length > 200) logEl.firstChild.remove();
  logEl.scrollTop = logEl.scrollHeight;
}

function showState(state, text) {
  stateEl.dataset.state = state;
  stateEl.textContent = text;
}

function setJoined(joined) {
  joinBtn.disabled = joined;
  nameIn.disabled = chanIn.disabled = joined;
  leaveBtn.disabled = !joined;
  muteBtn.disabled = !joined;
  if (!joined) {
    muteBtn.setAttribute("aria-pressed", "false");
    muteBtn.textContent = "Mute";
  }
}

async function refreshNames(ids) {
  if (ids.every((id) => names[id])) return;
  try {
    const r = await fetch("/dev/names", { cache: "no-store" });
    if (r.ok) names = { ...names, ...(await r.json()) };
  } catch { /* keep the ids */ }
}

async function renderRoster() {
  const people = client ? client.participants() : [];
  await refreshNames(people.map((p) => p.user_id));
  listEl.replaceChildren();
  for (const p of people) {
    const li = document.createElement("li");
    li.dataset.userId = p.user_id;
    li.dataset.connectionId = p.connection_id;
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.setAttribute("aria-hidden", "true");
    const nm = document.createElement("span");
    nm.className = "name";
    nm.textContent = names[p.user_id] || `user ${p.user_id}`;
    const tag = document.createElement("span");
    tag.className = "tag";
    li.append(dot, nm, tag);
    listEl.append(li);
  }
  emptyEl.hidden = people.length > 0;
  paintSpeaking();
}

function paintSpeaking() {
  for (const li of listEl.children) {
    const self = client && client.ready && li.dataset.connectionId === client.ready.connection_id;
    const on = speakingNow.has(li.dataset.connectionId);
    li.classList.toggle("speaking", on);
    const parts = [];
    if (self) parts.push("you");
    if (self && client.muted) parts.push("muted");
    if (on) parts.push("speaking");
    li.querySelector(".tag").textContent = parts.length ? `(${parts.join(", ")})` : "";
  }
}

async function pollLevels() {
  if (!client || !client.ready) return;
  try {
    const lv = await client.levels();
    const now = new Set();
    if (lv.self > SPEAKING_LEVEL) now.add(client.ready.connection_id);
    for (const s of lv.slots) if (s.connection_id && s.level > SPEAKING_LEVEL) now.add(s.connection_id);
    speakingNow = now;
    paintSpeaking();
  } catch { /* closed meanwhile */ }
}

async function join(ev) {
  ev.preventDefault();
  if (!form.reportValidity()) return;
  const name = nameIn.value.trim(), channel = chanIn.value.trim();
  try { localStorage.setItem("voxd-demo-name", name); } catch { /* */ }
  setJoined(true);
  showState("granting", "asking for a grant…");
  let grant;
  try {
    const r = await fetch(`/dev/grant?name=${encodeURIComponent(name)}&channel=${encodeURIComponent(channel)}`,
                          { cache: "no-store" });
    const body = await r.json();
    if (!r.ok || !body.result) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${r.status}`);
    grant = body.result;
  } catch (e) {
    showState("error", `no grant: ${e.message}`);
    log(`grant refused: ${e.message}`);
    setJoined(false);
    return;
  }
  names[grant.voice_state.user_id] = name;
  log(`grant for ${name} (user ${grant.voice_state.user_id}) on ${grant.voice_server.endpoint}`);
  const c = new VoxClient({ endpoint: grant.voice_server.endpoint, token: grant.voice_server.token });
  client = c;
  c.addEventListener("state", (e) => {
    if (c !== client) return;
    const d = e.detail;
    log(`state ${d.state}${d.code !== undefined ? ` (${d.code} ${d.reason || ""})` : ""}`);
    const text = {
      connecting: "connecting…",
      connected: `connected to “${channel}”`,
      resuming: "connection lost — reconnecting…",
      disconnected: `disconnected${d.code ? ` (${d.code} ${d.reason || ""})` : d.reason ? ` (${d.reason})` : ""}`,
      closed: d.code === 1000 ? "left" : `closed (${d.code} ${d.reason || ""})`,
    }[d.state] || d.state;
    showState(d.state, text);
    if (d.state === "closed" || d.state === "disconnected") finishUi();
  });
  c.addEventListener("ready", (e) => {
    log(`ready: connection ${e.detail.connection_id}`);
    showState("ready", `signed in as ${name} — setting up audio…`);
  });
  c.addEventListener("roster", (e) => {
    if (e.detail.joined) log(`joined: ${names[e.detail.joined.user_id] || e.detail.joined.user_id}`);
    if (e.detail.left) log(`left: ${names[e.detail.left.user_id] || e.detail.left.user_id}`);
    if (c === client) renderRoster();
  });
  c.addEventListener("speaking", (e) => {
    const d = e.detail;
    log(`slot ${d.slot}: ${d.user_id ? names[d.user_id] || d.user_id : "nobody"}`);
  });
  c.addEventListener("media", (e) => log(`media ${e.detail.connectionState}`));
  c.addEventListener("mute", paintSpeaking);
  clearInterval(levelTimer);
  levelTimer = setInterval(pollLevels, 150);
  try {
    await c.join();
  } catch (e) {
    log(`join failed: ${e.message}`);
  }
}

function finishUi() {
  clearInterval(levelTimer);
  levelTimer = null;
  speakingNow = new Set();
  setJoined(false);
  listEl.replaceChildren();
  emptyEl.hidden = false;
}

form.addEventListener("submit", join);
leaveBtn.addEventListener("click", () => {
  if (client) client.leave();
  finishUi();
});
muteBtn.addEventListener("click", () => {
  if (!client) return;
  const m = !client.muted;
  client.setMuted(m);
  muteBtn.setAttribute("aria-pressed", String(m));
  muteBtn.textContent = m ? "Unmute" : "Mute";
  log(m ? "muted" : "unmuted");
});
window.addEventListener("pagehide", () => { if (client) client.leave(); });
