"""
tests/integration/fakenode.py — a stand-in for the node side of the srtp transport
(docs/protocol.md, "Media: the srtp transport"), just enough to drive the real voxclient binary
end to end without voxd: a WebSocket server at /voice (Python stdlib only) and a UDP forwarder.

It pairs clients two by two. Each one gets a Session Description whose recv_key is its peer's
send_key and whose slot 0 SSRC is its peer's SSRC, so the forwarder can pass SRTP packets through
without decrypting them (a real node re-encrypts and rewrites SSRCs onto slots). RTCP only latches
the sender's address. Tokens are "user:<user_id>"; "bad" is refused with 4004.

Everything binds 127.0.0.1 on ephemeral ports, runs on daemon threads and is bounded in time.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Conn:
    def __init__(self, node, sock):
        self.node, self.sock = node, sock
        self.user_id = None
        self.connection_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        self.ssrc = struct.unpack("!I", os.urandom(4))[0] | 1
        self.send_key = None
        self.mode = None
        self.received = []  # (op, d) from the client
        self.peer = None
        self.closed = False
        self.lock = threading.Lock()

    # -- frames --
    def _recv_exact(self, n):
        b = b""
        while len(b) < n:
            c = self.sock.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b

    def recv_frame(self):
        h = self._recv_exact(2)
        op, ln = h[0] & 0x0F, h[1] & 0x7F
        if ln == 126:
            ln = struct.unpack("!H", self._recv_exact(2))[0]
        elif ln == 127:
            ln = struct.unpack("!Q", self._recv_exact(8))[0]
        mask = self._recv_exact(4) if h[1] & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._recv_exact(ln)))
        return op, data

    def send_frame(self, op, data):
        n = len(data)
        if n < 126:
            h = struct.pack("!BB", 0x80 | op, n)
        elif n < 65536:
            h = struct.pack("!BBH", 0x80 | op, 126, n)
        else:
            h = struct.pack("!BBQ", 0x80 | op, 127, n)
        with self.lock:
            if not self.closed:
                self.sock.sendall(h + data)

    def send(self, op, d):
        self.send_frame(1, json.dumps({"op": op, "d": d}).encode())

    def close(self, code, reason):
        self.send_frame(8, struct.pack("!H", code) + reason.encode())
        with self.lock:
            self.closed = True

    def drop(self):
        """Closes the TCP connection without a close frame."""
        with self.lock:
            self.closed = True
        self.sock.shutdown(socket.SHUT_RDWR)

    # -- session --
    def sdesc(self, port=None):
        peer = self.peer
        return {"protocol": "srtp", "mode": self.mode, "address": "127.0.0.1",
                "port": port or self.node.udp_port, "ssrc": self.ssrc, "payload_type": 111,
                "audio_level_ext_id": 1,
                "send_key": base64.b64encode(self.send_key).decode(),
                "recv_key": base64.b64encode(peer.send_key).decode(),
                "slots": [{"slot": 0, "ssrc": peer.ssrc},
                          {"slot": 1, "ssrc": 0x7000_0001 ^ self.ssrc},
                          {"slot": 2, "ssrc": 0x7000_0002 ^ self.ssrc}]}

    def run(self):
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                c = self.sock.recv(4096)
                if not c:
                    return
                req += c
            lines = req.decode().split("\r\n")
            hdr = {k.strip().lower(): v.strip() for k, v in
                   (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            if not lines[0].startswith("GET /voice "):
                self.sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            acc = base64.b64encode(hashlib.sha1(hdr["sec-websocket-key"].encode() + GUID)
                                   .digest()).decode()
            self.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % acc)
                              .encode())
            self.send(8, {"heartbeat_interval": self.node.heartbeat_ms})
            while True:
                op, data = self.recv_frame()
                if op == 8:
                    self.send_frame(8, data[:2])
                    return
                if op != 1:
                    continue
                m = json.loads(data)
                self.received.append((m["op"], m.get("d")))
                self.node.on_message(self, m["op"], m.get("d"))
        except (EOFError, OSError):
            pass
        finally:
            with self.lock:
                self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


class FakeNode:
    MODES = {"AES_CM_128_HMAC_SHA1_80": 30, "AEAD_AES_128_GCM": 28}

    def __init__(self, heartbeat_ms=1000):
        self.heartbeat_ms = heartbeat_ms
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.endpoint = "127.0.0.1:%d" % self.tcp.getsockname()[1]
        self.udps = []
        self.udp_port = self.add_udp()
        self.conns = []
        self.waiting = None
        self.latched = {}  # ssrc -> address
        self.forwarded = {}  # udp port -> datagrams forwarded
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def add_udp(self):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        self.udps.append(u)
        port = u.getsockname()[1]
        threading.Thread(target=self._relay, args=(u, port), daemon=True).start()
        return port

    def _accept(self):
        while True:
            try:
                s, _ = self.tcp.accept()
            except OSError:
                return
            c = Conn(self, s)
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=c.run, daemon=True).start()

    def _relay(self, u, port):
        while True:
            try:
                data, addr = u.recvfrom(2048)
            except OSError:
                return
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            rtcp = 192 <= data[1] <= 223
            ssrc = struct.unpack("!I", data[4:8] if rtcp else data[8:12])[0]
            self.latched[ssrc] = addr
            if rtcp:  # liveness only
                continue
            with self.lock:
                src = next((c for c in self.conns if c.ssrc == ssrc and c.peer), None)
            if src is None:
                continue
            dst = self.latched.get(src.peer.ssrc)
            if dst:
                u.sendto(data, dst)
                self.forwarded[port] = self.forwarded.get(port, 0) + 1

    def on_message(self, c, op, d):
        if op == 0:
            tok = d.get("token", "")
            if not tok.startswith("user:"):
                c.close(4004, "authentication failed: malformed token")
                return
            c.user_id = tok[5:]
            c.send(2, {"connection_id": c.connection_id, "user_id": c.user_id,
                       "session_id": "s", "resume_token": "r" * 22})
        elif op == 7:  # Resume: the new socket takes the old one's session over
            with self.lock:
                old = next((o for o in self.conns if o is not c and
                            o.connection_id == d.get("connection_id")), None)
            if old is None or d.get("resume_token") != "r" * 22:
                c.close(4006, "session no longer valid")
                return
            for k in ("user_id", "connection_id", "ssrc", "send_key", "mode", "peer"):
                setattr(c, k, getattr(old, k))
            if c.peer:
                c.peer.peer = c
            with self.lock:
                self.conns.remove(old)
            c.send(9, {})
            if c.peer:
                c.send(5, {"slot": 0, "user_id": c.peer.user_id,
                           "connection_id": c.peer.connection_id})
                c.send(12, {"user_id": c.peer.user_id, "connection_id": c.peer.connection_id})
        elif op == 1:
            mode = next((m for m in d["modes"] if m in self.MODES), None)
            if d.get("protocol") != "srtp" or mode is None:
                c.close(4016, "unknown encryption mode")
                return
            c.mode, c.send_key = mode, os.urandom(self.MODES[mode])
            with self.lock:
                peer, self.waiting = self.waiting, (None if self.waiting else c)
            if peer:
                c.peer, peer.peer = peer, c
                for a, b in ((c, peer), (peer, c)):
                    a.send(4, a.sdesc())
                    a.send(5, {"slot": 0, "user_id": b.user_id, "connection_id": b.connection_id})
                    a.send(5, {"slot": 1, "user_id": None, "connection_id": None})
                    a.send(5, {"slot": 2, "user_id": None, "connection_id": None})
                    a.send(12, {"user_id": b.user_id, "connection_id": b.connection_id})
        elif op == 3:
            c.send(6, d)

    def conn(self, user_id):
        with self.lock:
            return next((c for c in self.conns if c.user_id == user_id), None)

    def stop(self):
        try:
            self.tcp.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
        except OSError:
            pass
        self.tcp.close()
        for u in self.udps:
            u.close()
