// voxclient.js — the browser's voice client for voxd: one ES module, no build step, no
// dependencies. It speaks the voice WebSocket of docs/protocol.md (Hello, Identify, Ready,
// Heartbeat, Select Protocol, Session Description, Speaking, Client Connect/Disconnect, Resume)
// and the `webrtc` media transport ("Media: the webrtc transport"): one RTCPeerConnection with one
// sendonly audio transceiver (mid "0", the microphone) and N recvonly ones (mids "1".."N", one per
// downstream slot), offer in Select Protocol, answer in Session Description, no renegotiation
// when people come and go. Documented in docs/client.md.
//
//   const c = new VoxClient({endpoint: "127.0.0.1:8701", token});
//   c.addEventListener("roster", (e) => console.log(e.detail));
//   await c.join();  ...  c.setMuted(true);  ...  c.leave();

const DEFAULT_SLOTS = 3;
const RESUME_WINDOW_MS = 30000; // the node's --transport-reap default
const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

// Close codes after which the session cannot go on (docs/protocol.md); anything else that ends the
// WebSocket once media was negotiated is treated as a drop and resumed.
const FATAL_CODES = new Set([
  4000, 4001, 4002, 4003, 4004, 4005, 4006, 4011, 4012, 4015, 4016, 4021, 4022, 4023, 4024,
]);

const OP = {
  IDENTIFY: 0, SELECT_PROTOCOL: 1, READY: 2, HEARTBEAT: 3, SESSION_DESCRIPTION: 4, SPEAKING: 5,
  HEARTBEAT_ACK: 6, RESUME: 7, HELLO: 8, RESUMED: 9, CLIENT_CONNECT: 12, CLIENT_DISCONNECT: 13,
};

export class VoxClient extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.endpoint  "host:port" as voice_server.endpoint gives it (or a ws:// / wss://
   *                             URL of the node); the WebSocket is <endpoint>/voice
   * @param {string} o.token     the grant token (voice_server.token)
   * @param {MediaStreamTrack} [o.track]  what to send; default getUserMedia({audio: true})
   * @param {number} [o.slots=3] downstream slots to offer (the node's N)
   * @param {boolean} [o.playback=true]  play what is received (false: attached muted, for WebAudio)
   * @param {number} [o.resumeWindowMs=30000]  give up resuming after this long (the node's reap)
   * @param {boolean} [o.secure] wss:// instead of ws:// (default: as the page's own protocol)
   */
  constructor(o) {
    super();
    if (!o || typeof o.endpoint !== "string" || typeof o.token !== "string") {
      throw new TypeError("VoxClient needs {endpoint, token}");
    }
    this.endpoint = o.endpoint;
    this.token = o.token;
    this.nSlots = o.slots || DEFAULT_SLOTS;
    this.playback = o.playback !== false;
    this.resumeWindowMs = o.resumeWindowMs || RESUME_WINDOW_MS;
    this.secure = o.secure ?? (globalThis.location?.protocol === "https:");
    this._givenTrack = o.track || null;

    this.state = "new";
    this.pc = null; // the RTCPeerConnection (tests read getStats() from it)
    this.track = null; // what we send
    this.muted = false;
    this.ws = null;
    this.ready = null; // {connection_id, user_id, session_id, resume_token}
    this.heartbeatInterval = 0;
    this.slots = []; // [{slot, ssrc, mid, user_id, connection_id, track, audio}]
    this.roster = new Map(); // connection_id -> {user_id, connection_id} (others)
    this.negotiations = 0; // answers applied: 1 for a whole call (no renegotiation)
    this.resumes = 0; // successful resumes
    this._ownTrack = false;
    this._hbTimer = null;
    this._hbAcked = true;
    this._leaving = false;
    this._media = false; // Select Protocol sent: from then on a drop is resumable
    this._resumeDeadline = 0;
    this._retryTimer = null;
    this._attempt = 0;
    this._joinWaiters = null;
  }

  // ---- public API -------------------------------------------------------------------------------

  /** Connects: media track, peer connection and offer, WebSocket, Identify, Select Protocol.
   *  Resolves on Ready (the media connects afterwards: watch the `state` event for "connected");
   *  rejects if the node closes before Ready. */
  async join() {
    if (this.state !== "new") throw new Error("join() once per VoxClient");
    this._setState("connecting");
    try {
      if (this._givenTrack) {
        this.track = this._givenTrack;
      } else {
        const s = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        });
        this.track = s.getAudioTracks()[0];
        this._ownTrack = true;
      }
      if (this._leaving) throw new Error("left before joining");
      this.track.enabled = !this.muted;
      await this._makeOffer();
    } catch (e) {
      this._finish("closed", { code: 0, reason: "cannot start: " + (e && e.message) });
      throw e;
    }
    return new Promise((resolve, reject) => {
      this._joinWaiters = { resolve, reject };
      this._connect(false);
    });
  }

  /** Leaves: closes the WebSocket (1000) and the peer connection; state "closed". The node keeps
   *  the voice connection until its transport reap (--transport-reap) unless the gateway
   *  disconnects it (voice.disconnect). */
  leave() {
    if (this.state === "closed" || this.state === "disconnected") return;
    this._leaving = true;
    this._finish("closed", { code: 1000, reason: "left" });
  }

  /** Mutes or unmutes the microphone: the sent track is disabled (silence, level -127 dBov, so
   *  the relay gives our slot to someone else) and the node is told with Speaking (advisory). */
  setMuted(m) {
    this.muted = !!m;
    if (this.track) this.track.enabled = !this.muted;
    this._send(OP.SPEAKING, { speaking: !this.muted }, true);
    this._emit("mute", { muted: this.muted });
  }

  /** The participants: ourselves first (self: true), then the others from Client Connect. */
  participants() {
    const out = [];
    if (this.ready) {
      out.push({ user_id: this.ready.user_id, connection_id: this.ready.connection_id, self: true });
    }
    for (const p of this.roster.values()) out.push({ ...p, self: false });
    return out;
  }

  /** Audio levels now (0..1): {self, slots: [{slot, user_id, connection_id, level}]}, from the
   *  peer connection's stats (media-source and inbound-rtp audioLevel). */
  async levels() {
    const out = { self: 0, slots: this.slots.map((s) => ({
      slot: s.slot, user_id: s.user_id, connection_id: s.connection_id, level: 0 })) };
    if (!this.pc) return out;
    const stats = await this.pc.getStats();
    stats.forEach((r) => {
      if (r.type === "media-source" && r.kind === "audio" && typeof r.audioLevel === "number") {
        out.self = this.muted ? 0 : r.audioLevel;
      } else if (r.type === "inbound-rtp" && r.kind === "audio" && r.mid != null) {
        const s = this.slots.find((x) => x.mid === r.mid);
        const o = s && out.slots.find((x) => x.slot === s.slot);
        if (o && typeof r.audioLevel === "number") o.level = r.audioLevel;
      }
    });
    return out;
  }

  // ---- media ------------------------------------------------------------------------------------

  async _makeOffer() {
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle",
                                       rtcpMuxPolicy: "require" });
    this.pc = pc;
    this.sender = pc.addTransceiver(this.track, {
      direction: "sendonly", streams: [new MediaStream([this.track])] }).sender;
    for (let i = 0; i < this.nSlots; i++) pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addEventListener("connectionstatechange", () => this._onPcState());
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.offerSdp = pc.localDescription.sdp;
  }

  async _applyAnswer(d) {
    const pc = this.pc;
    if (!pc || pc.signalingState === "closed") return;
    if (d.protocol !== "webrtc" || typeof d.sdp !== "string") {
      this._fatal(0, "session description is not webrtc");
      return;
    }
    try {
      if (pc.signalingState !== "have-local-offer") {
        // A second Session Description (a move to a room on another media worker): the browser's
        // ICE credentials and fingerprint are unchanged, so the node's new answer is applied to
        // a fresh local offer that is not sent.
        await pc.setLocalDescription(await pc.createOffer());
      }
      await pc.setRemoteDescription({ type: "answer", sdp: d.sdp });
    } catch (e) {
      this._fatal(0, "answer refused by the browser: " + (e && e.message));
      return;
    }
    this.negotiations++;
    const old = this.slots;
    const bySlot = new Map(old.map((s) => [s.slot, s]));
    this.slots = [];
    const list = Array.isArray(d.slots) ? d.slots : [];
    for (const s of list) {
      const mid = s.mid != null ? String(s.mid) : String(s.slot + 1);
      const tr = pc.getTransceivers().find((t) => t.mid === mid);
      if (!tr) continue;
      const prev = bySlot.get(s.slot);
      const entry = { slot: s.slot, ssrc: s.ssrc, mid, user_id: prev ? prev.user_id : null,
                      connection_id: prev ? prev.connection_id : null,
                      track: tr.receiver.track, audio: prev && prev.track === tr.receiver.track
                        ? prev.audio : null };
      this.slots[s.slot] = entry;
      if (!entry.audio) {
        entry.audio = this._attach(entry.track);
        this._emit("track", { slot: entry.slot, track: entry.track, mid, ssrc: entry.ssrc,
                              audio: entry.audio });
      }
    }
    this.slots = this.slots.filter(Boolean);
    this._onPcState();
  }

  // Chrome hands a remote WebRTC track's samples to WebAudio only while a media element plays
  // it: every slot track gets an <audio> element (muted when playback is off).
  _attach(track) {
    const el = document.createElement("audio");
    el.autoplay = true;
    el.muted = !this.playback;
    el.srcObject = new MediaStream([track]);
    const p = el.play();
    if (p && p.catch) p.catch(() => { /* autoplay refused: a click on the page will start it */ });
    return el;
  }

  _onPcState() {
    const pc = this.pc;
    if (!pc) return;
    const cs = pc.connectionState;
    this._emit("media", { connectionState: cs, iceConnectionState: pc.iceConnectionState });
    if (cs === "failed") {
      this._finish("disconnected", { code: 0, reason: "media connection failed" });
    } else if (cs === "connected" && this.negotiations > 0 && this.state === "connecting") {
      this._setState("connected");
    }
  }

  // ---- the voice WebSocket ----------------------------------------------------------------------

  _url() {
    if (/^wss?:\/\//.test(this.endpoint)) {
      const u = this.endpoint.replace(/\/+$/, "");
      return u.endsWith("/voice") ? u : u + "/voice";
    }
    return (this.secure ? "wss://" : "ws://") + this.endpoint + "/voice";
  }

  _connect(resume) {
    let ws;
    try {
      ws = new WebSocket(this._url());
    } catch (e) {
      this._onClose(null, 0, "cannot open the WebSocket: " + e.message);
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this._onMessage(ws, ev.data, resume);
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
    ws.onerror = () => { /* onclose follows */ };
  }

  _send(op, d, quiet) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      if (!quiet) this._emit("debug", { msg: "not sent (socket not open): op " + op });
      return false;
    }
    ws.send(JSON.stringify({ op, d }));
    return true;
  }

  _onMessage(ws, data, resume) {
    if (ws !== this.ws) return;
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      this._fatal(0, "not JSON from the node");
      return;
    }
    const d = m.d;
    switch (m.op) {
      case OP.HELLO:
        this.heartbeatInterval = (d && d.heartbeat_interval) || 13750;
        if (resume) {
          this._send(OP.RESUME, { connection_id: this.ready.connection_id,
                                  session_id: this.ready.session_id,
                                  resume_token: this.ready.resume_token });
        } else {
          this._send(OP.IDENTIFY, { token: this.token });
        }
        this._startHeartbeat();
        break;
      case OP.READY:
        this.ready = { connection_id: d.connection_id, user_id: d.user_id,
                       session_id: d.session_id, resume_token: d.resume_token };
        this._emit("ready", { ...this.ready });
        this._emitRoster();
        this._send(OP.SELECT_PROTOCOL, { protocol: "webrtc", sdp: this.offerSdp });
        this._media = true;
        if (this._joinWaiters) {
          this._joinWaiters.resolve(this.ready);
          this._joinWaiters = null;
        }
        break;
      case OP.SESSION_DESCRIPTION:
        this._applyAnswer(d || {});
        break;
      case OP.RESUMED:
        this.resumes++;
        this._attempt = 0;
        // the node re-sends the slot table and the roster: rebuild the roster from them
        this.roster.clear();
        this._emitRoster();
        this._setState(this.pc && this.pc.connectionState === "connected" ? "connected"
                                                                           : "connecting");
        this._emit("resumed", {});
        break;
      case OP.HEARTBEAT_ACK:
        this._hbAcked = true;
        break;
      case OP.SPEAKING:
        if (d && typeof d.slot === "number") {
          const s = this.slots.find((x) => x.slot === d.slot);
          if (s) {
            s.user_id = d.user_id ?? null;
            s.connection_id = d.connection_id ?? null;
          } else {
            // Speaking may beat the answer's processing: keep it for when the slot appears
            this.slots.push({ slot: d.slot, ssrc: null, mid: String(d.slot + 1),
                              user_id: d.user_id ?? null, connection_id: d.connection_id ?? null,
                              track: null, audio: null });
            this.slots.sort((a, b) => a.slot - b.slot);
          }
          this._emit("speaking", { slot: d.slot, user_id: d.user_id ?? null,
                                   connection_id: d.connection_id ?? null });
        }
        break;
      case OP.CLIENT_CONNECT:
        if (d && d.connection_id) {
          this.roster.set(d.connection_id, { user_id: d.user_id, connection_id: d.connection_id });
          this._emitRoster({ joined: { user_id: d.user_id, connection_id: d.connection_id } });
        }
        break;
      case OP.CLIENT_DISCONNECT:
        if (d && d.connection_id) {
          this.roster.delete(d.connection_id);
          this._emitRoster({ left: { user_id: d.user_id, connection_id: d.connection_id } });
        }
        break;
      default:
        break; // unknown ops from the node are ignored (forward compatibility)
    }
  }

  _startHeartbeat() {
    clearInterval(this._hbTimer);
    this._hbAcked = true;
    const beat = () => {
      if (!this._hbAcked) {
        // no ACK for a whole interval: the socket is a zombie; drop it and resume
        const ws = this.ws;
        this._onClose(ws, 4009, "no heartbeat ack");
        try { ws.close(3000, "no heartbeat ack"); } catch { /* already closed */ }
        return;
      }
      this._hbAcked = false;
      this._send(OP.HEARTBEAT, Date.now(), true);
    };
    beat();
    this._hbTimer = setInterval(beat, Math.max(1000, this.heartbeatInterval * 0.75));
  }

  _onClose(ws, code, reason) {
    if (ws !== this.ws) return; // an old socket
    this.ws = null;
    clearInterval(this._hbTimer);
    if (ws) { ws.onmessage = ws.onclose = ws.onerror = null; }
    if (this._leaving || this.state === "closed" || this.state === "disconnected") return;
    const resumable = this._media && this.ready && !FATAL_CODES.has(code);
    if (!resumable) {
      // a refused Resume (4006: the session is gone) is a lost connection, not a close
      const final = FATAL_CODES.has(code) && this.state !== "resuming" ? "closed" : "disconnected";
      this._finish(final, { code, reason: reason || "the voice WebSocket closed" });
      return;
    }
    if (this.state !== "resuming") {
      this._resumeDeadline = Date.now() + this.resumeWindowMs;
      this._attempt = 0;
      this._setState("resuming", { code, reason });
    }
    const wait = BACKOFF_MS[Math.min(this._attempt, BACKOFF_MS.length - 1)];
    this._attempt++;
    if (Date.now() + wait >= this._resumeDeadline) {
      this._finish("disconnected", { code, reason: "could not resume: " + (reason || code) });
      return;
    }
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (this.state === "resuming") this._connect(true);
    }, wait);
  }

  _fatal(code, reason) {
    this._finish("closed", { code, reason });
  }

  _finish(state, info) {
    clearInterval(this._hbTimer);
    clearTimeout(this._retryTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, info.reason && info.code === 1000 ? info.reason : "bye"); } catch { /* */ }
    }
    for (const s of this.slots) {
      if (s.audio) { s.audio.srcObject = null; s.audio = null; }
    }
    if (this.pc) this.pc.close();
    if (this._ownTrack && this.track) this.track.stop();
    this.roster.clear();
    if (this._joinWaiters) {
      const e = new Error("closed before Ready: " + info.code + " " + info.reason);
      e.code = info.code;
      this._joinWaiters.reject(e);
      this._joinWaiters = null;
    }
    this._setState(state, info);
  }

  // ---- events -----------------------------------------------------------------------------------

  _setState(state, info) {
    this.state = state;
    this._emit("state", { state, ...(info || {}) });
  }

  _emitRoster(change) {
    this._emit("roster", { participants: this.participants(), ...(change || {}) });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // For tests: drop the WebSocket as a network failure would (no leave); the client resumes.
  _dropSocket() {
    const ws = this.ws;
    if (!ws) return false;
    this._onClose(ws, 1006, "dropped (test)");
    try { ws.close(); } catch { /* */ }
    return true;
  }
}

export default VoxClient;
