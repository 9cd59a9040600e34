"""
tests/integration/voxlib.py — the harness every integration test uses.

It starts the real `voxd` binary (env VOXD_BIN, default build/voxd) on free loopback ports with
secrets written to a private temp dir, waits for /healthz with a bounded deadline, and talks to it
over real sockets: /rpc (keep-alive HTTP/1.1), raw HTTP for envelope tests, /events and /voice
(websocket-client). Every voxd it starts is stopped by its PID (SIGTERM, exit code checked; SIGKILL
only as a fallback), also when a test dies (atexit).

voxd's stderr goes to a log file under $VOXD_LOG_DIR (set by tests/run-all.sh, which scans it for
sanitizer reports) or under a temp dir of its own.

Output: ok(name) / not_ok(name, why) print `ok - file:name` / `not ok - file:name: why`, the same
lines as tests/unit/test.h; run-all.sh counts them. Use /usr/bin/python3 (python3-websocket).
"""

import atexit
import base64
import copy
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import websocket  # python3-websocket (websocket-client)

RPC_SECRET = "rpc-secret-for-tests-0123456789"
TOKEN_SECRET = "token-secret-for-tests-abcdefghij"

_script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "test"
_results = {"pass": 0, "fail": 0}
_lock = threading.Lock()


# ---- output ------------------------------------------------------------------------------------
def ok(name):
    with _lock:
        _results["pass"] += 1
        print("ok - %s:%s" % (_script, name), flush=True)


def not_ok(name, why):
    why = " ".join(str(why).split())
    if len(why) > 600:
        why = why[:600] + "..."
    with _lock:
        _results["fail"] += 1
        print("not ok - %s:%s: %s" % (_script, name, why), flush=True)


def check(name, cond, why=""):
    """ok/not_ok from a condition; returns cond."""
    if cond:
        ok(name)
    else:
        not_ok(name, why or "condition false")
    return bool(cond)


class Fail(Exception):
    """Raised by expect() to end one test case with its first failure."""


def expect(cond, why):
    if not cond:
        raise Fail(why)


def case(name):
    """Decorator-ish runner: case(name)(fn) runs fn(); ok if it returns, not ok on Fail/exception."""

    def run(fn):
        try:
            fn()
        except Fail as e:
            not_ok(name, e)
        except Exception as e:  # an unexpected exception is a failure of this case only
            tb = traceback.format_exc().strip().splitlines()
            not_ok(name, "%s: %s (%s)" % (type(e).__name__, e, tb[-3].strip() if len(tb) > 2 else ""))
        else:
            ok(name)
        return fn

    return run


_finishers = []


def on_finish(fn):
    """Registers fn() to run when the script ends (finish() or atexit), after every node has
    stopped: pglib stops its Postgres clusters this way (finish() ends with os._exit, which skips
    atexit handlers)."""
    _finishers.append(fn)


def _run_finishers():
    while _finishers:
        fn = _finishers.pop()
        try:
            fn()
        except Exception as e:
            not_ok("cleanup", e)


def finish():
    """Ends the script: stops every node (then runs on_finish hooks), exit status 1 if anything
    failed."""
    _kill_clients()
    _stop_all()
    _run_finishers()
    sys.stdout.flush()
    os._exit(1 if _results["fail"] else 0)


# ---- helpers -----------------------------------------------------------------------------------
def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_until(pred, timeout=5.0, interval=0.02, what="condition"):
    """Polls pred() until truthy or the deadline; returns its value or raises Fail."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Fail("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


_sf_counter = [int(time.time()) % 100000 * 1000000 + 1000000000000]


def snowflake():
    """A fresh valid snowflake string (unique within this process)."""
    _sf_counter[0] += 1
    return str(_sf_counter[0])


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64url_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_claims(token):
    return json.loads(b64url_dec(token.split(".")[1]))


def jwt_sign(claims, secret=TOKEN_SECRET, header=None):
    """Mints an HS256 compact JWT (to forge tokens the node must refuse)."""
    h = header if header is not None else b64url(b'{"alg":"HS256","typ":"JWT"}')
    c = b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), (h + "." + c).encode(), hashlib.sha256).digest()
    return h + "." + c + "." + b64url(mac)


VOICE_STATE_KEYS = {
    "guild_id", "channel_id", "user_id", "connection_id", "session_id", "member", "mute", "deaf",
    "self_mute", "self_deaf", "self_video", "self_stream", "is_mobile", "suppress",
    "viewer_stream_keys", "version",
}


def voice_state_problem(vs):
    """None if vs has exactly the documented field set and types, else a description."""
    if not isinstance(vs, dict):
        return "voice state is not an object: %r" % (vs,)
    keys = set(vs)
    if keys != VOICE_STATE_KEYS:
        return "voice state keys: missing %s, extra %s" % (
            sorted(VOICE_STATE_KEYS - keys), sorted(keys - VOICE_STATE_KEYS))
    for k in ("mute", "deaf", "self_mute", "self_deaf", "self_video", "self_stream", "is_mobile",
              "suppress"):
        if not isinstance(vs[k], bool):
            return "%s is not a bool: %r" % (k, vs[k])
    if not isinstance(vs["version"], int) or isinstance(vs["version"], bool):
        return "version is not an integer: %r" % (vs["version"],)
    if not isinstance(vs["viewer_stream_keys"], list):
        return "viewer_stream_keys is not an array"
    cid = vs["connection_id"]
    if not (isinstance(cid, str) and len(cid) == 22 and
            all(ch.isalnum() or ch in "-_" for ch in cid)):
        return "connection_id is not 22 base64url characters: %r" % (cid,)
    return None


# ---- the node ----------------------------------------------------------------------------------
_nodes = []


def _stop_all():
    for n in list(_nodes):
        try:
            n.stop(report=True)
        except Exception as e:
            not_ok("voxd-stop", e)


def _at_exit():
    _stop_all()
    _run_finishers()


atexit.register(_at_exit)


class Voxd:
    """One voxd process on free loopback ports. Voxd(args=[...]).start()."""

    def __init__(self, args=(), node_id="voxd-test", env_secrets=False, name=None, db=None):
        self.args = list(args) + (["--db", db] if db else [])
        self.db = db
        self.node_id = node_id
        self.env_secrets = env_secrets
        self.name = name or "voxd%d" % (len(_nodes) + 1)
        self.bin = os.environ.get("VOXD_BIN", "build/voxd")
        self.tmp = tempfile.mkdtemp(prefix="voxd-it-")
        logdir = os.environ.get("VOXD_LOG_DIR") or self.tmp
        os.makedirs(logdir, exist_ok=True)
        self.log_path = os.path.join(logdir, "%s-%s-%d.stderr" % (
            os.path.splitext(_script)[0], self.name, os.getpid()))
        self.proc = None
        self.exit_code = None
        self._conn = None

    # -- lifecycle --
    def start(self, timeout=10.0):
        last = None
        for _attempt in range(3):  # a free port may be taken between probe and bind: retry
            self.rpc_port, self.voice_port = free_port(), free_port()
            if self._spawn(timeout):
                _nodes.append(self)
                return self
            last = self._tail()
        raise RuntimeError("voxd did not become healthy; stderr tail: %s" % last)

    def _spawn(self, timeout):
        rs = os.path.join(self.tmp, "rpc.secret")
        ts = os.path.join(self.tmp, "token.secret")
        with open(rs, "w") as f:
            f.write(RPC_SECRET)
        with open(ts, "w") as f:
            f.write(TOKEN_SECRET)
        os.chmod(rs, 0o600)
        os.chmod(ts, 0o600)
        cmd = [self.bin, "--rpc-listen", "127.0.0.1:%d" % self.rpc_port,
               "--voice-listen", "127.0.0.1:%d" % self.voice_port,
               "--media-port-base", "0",
               "--node-id", self.node_id, "--log-level", os.environ.get("VOXD_LOG_LEVEL", "info")]
        env = dict(os.environ)
        if self.env_secrets:
            env["VOXD_RPC_SECRET"] = RPC_SECRET
            env["VOXD_TOKEN_SECRET"] = TOKEN_SECRET
        else:
            cmd += ["--rpc-secret-file", rs, "--token-secret-file", ts]
        cmd += self.args
        self.cmd = cmd
        self.logf = open(self.log_path, "ab")
        self.logf.write(("# %s\n" % " ".join(cmd)).encode())
        self.logf.flush()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.logf.close()
                return False
            try:
                st, _, _ = self.http("GET", "/healthz", timeout=1.0)
                if st == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        self._kill()
        return False

    def _tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-1500:].decode(errors="replace")
        except OSError:
            return ""

    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill9(self):
        """SIGKILL by PID (a crash): no clean exit is expected or reported."""
        if self in _nodes:
            _nodes.remove(self)
        if self._conn:
            self._conn.close()
            self._conn = None
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.exit_code = self.proc.wait()
        try:
            self.logf.close()
        except Exception:
            pass

    def client(self):
        """A second handle on this node with its own keep-alive /rpc connection (for a thread)."""
        c = copy.copy(self)
        c._conn = None
        return c

    def stop(self, timeout=10.0, report=False):
        """SIGTERM by PID, wait (bounded) for the exit; SIGKILL as a fallback. Returns the exit
        code (None if it had to be killed). With report, prints ok/not ok for a clean exit."""
        if self in _nodes:
            _nodes.remove(self)
        if self._conn:
            self._conn.close()
            self._conn = None
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                code = None
        self.exit_code = code
        try:
            self.logf.close()
        except Exception:
            pass
        if report:
            if code == 0:
                ok("%s exits 0 on SIGTERM" % self.name)
            elif code is None:
                not_ok("%s exits 0 on SIGTERM" % self.name,
                       "still running %.0fs after SIGTERM; killed (log %s)" % (timeout, self.log_path))
            else:
                not_ok("%s exits 0 on SIGTERM" % self.name,
                       "exit code %s; stderr tail: %s" % (code, self._tail()[-400:]))
        return code

    # -- HTTP --
    def http(self, method, path, body=None, headers=None, timeout=10.0, auth=False):
        """One request on a fresh connection. Returns (status, headers dict, body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", self.rpc_port, timeout=timeout)
        try:
            h = dict(headers or {})
            if auth:
                h["Authorization"] = "Bearer " + RPC_SECRET
            if isinstance(body, str):
                body = body.encode()
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def raw_rpc(self, body, headers=None, auth=True, keepalive=None):
        """POST /rpc with an arbitrary body (bytes/str). Returns (status, parsed json or raw)."""
        h = {"Content-Type": "application/json"}
        if auth:
            h["Authorization"] = "Bearer " + RPC_SECRET
        h.update(headers or {})
        conn = keepalive or http.client.HTTPConnection("127.0.0.1", self.rpc_port, timeout=10)
        try:
            if isinstance(body, str):
                body = body.encode()
            conn.request("POST", "/rpc", body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
        finally:
            if keepalive is None:
                conn.close()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data

    def rpc(self, method, params, request_id=None, timeout=15.0):
        """POST /rpc over this node's keep-alive connection. Returns (status, json)."""
        env = {"method": method, "params": params}
        if request_id is not None:
            env["request_id"] = request_id
        body = json.dumps(env).encode()
        h = {"Content-Type": "application/json", "Authorization": "Bearer " + RPC_SECRET}
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.rpc_port, timeout=timeout)
            try:
                self._conn.request("POST", "/rpc", body=body, headers=h)
                r = self._conn.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # the server closed an idle keep-alive connection: retry once on a new one
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
            except Exception:
                # a timeout or a protocol error leaves the connection unusable: drop it
                self._conn.close()
                self._conn = None
                raise
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data

    def rpc_ok(self, method, params, **kw):
        """rpc() that must succeed; returns result."""
        st, body = self.rpc(method, params, **kw)
        expect(st == 200 and isinstance(body, dict) and "result" in body,
               "%s %s -> %s %s" % (method, json.dumps(params)[:300], st, body))
        return body["result"]

    def rpc_err(self, method, params, status, code, **kw):
        """rpc() that must fail with status/code; returns the error object."""
        st, body = self.rpc(method, params, **kw)
        got = body.get("error", {}).get("code") if isinstance(body, dict) else None
        expect(st == status and got == code,
               "%s %s -> %s %s, expected %s %s" % (method, json.dumps(params)[:300], st, body,
                                                   status, code))
        return body["error"]

    # -- event stream --
    def events(self, after=None, consumer="test", timeout=5.0):
        """An /events client. after=None: resume from the newest seq (only new events)."""
        ec = EventClient(self, consumer, timeout)
        ec.resume(ec.hello["last_seq"] if after is None else after)
        return ec

    def last_seq(self):
        ec = EventClient(self, "peek", 5.0)
        s = ec.hello["last_seq"]
        ec.close()
        return s

    def voice(self, timeout=5.0):
        return VoiceClient(self, timeout)

    def metrics_text(self):
        st, hd, body = self.http("GET", "/metrics")
        if st == 401:
            st, hd, body = self.http("GET", "/metrics", auth=True)
        expect(st == 200, "GET /metrics -> %s" % st)
        return body.decode(), hd


def ws_recv(ws, timeout=5.0):
    """Next message of a websocket-client connection: a dict, None on timeout, or
    ('close', code, reason) on close (code None when the connection dropped without one)."""
    ws.settimeout(timeout)
    try:
        op, data = ws.recv_data(control_frame=False)
    except websocket.WebSocketTimeoutException:
        return None
    except websocket.WebSocketConnectionClosedException:
        return ("close", None, "")
    if op == websocket.ABNF.OPCODE_CLOSE:
        code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
        return ("close", code, data[2:].decode(errors="replace"))
    return json.loads(data)


class EventClient:
    """/events: hello on connect; resume(after); next(timeout) -> event dict; ack(seq)."""

    def __init__(self, node, consumer="test", timeout=5.0, header=None):
        self.node = node
        self.consumer = consumer
        hdr = header if header is not None else ["Authorization: Bearer " + RPC_SECRET]
        self.ws = websocket.create_connection("ws://127.0.0.1:%d/events" % node.rpc_port,
                                              header=hdr, timeout=timeout)
        self.hello = self.recv(timeout)
        expect(isinstance(self.hello, dict) and self.hello.get("op") == "hello",
               "first /events message is not hello: %r" % (self.hello,))
        self.last = None

    def send(self, obj):
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def resume(self, after):
        self.send({"op": "resume", "after": after, "consumer": self.consumer})
        self.last = after

    def recv(self, timeout=5.0):
        """Next message as a dict; None on timeout; ('close', code, reason) on close."""
        return ws_recv(self.ws, timeout)

    def next(self, timeout=5.0):
        """The next event (strict: seq must be last+1). Raises Fail on timeout or a gap."""
        m = self.recv(timeout)
        expect(m is not None, "no event within %.1fs (last seq %s)" % (timeout, self.last))
        expect(isinstance(m, dict) and "seq" in m, "not an event: %r" % (m,))
        if self.last is not None:
            expect(m["seq"] == self.last + 1,
                   "seq %s after %s (not +1): %s" % (m["seq"], self.last, json.dumps(m)[:300]))
        self.last = m["seq"]
        return m

    def take(self, n, timeout=5.0):
        return [self.next(timeout) for _ in range(n)]

    def ack(self, seq):
        self.send({"ack": seq})

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


class VoiceClient:
    """/voice: hello (op 8) on connect; identify(token) -> ('ready', msg) or ('close', code)."""

    def __init__(self, node, timeout=5.0):
        self.ws = websocket.create_connection("ws://127.0.0.1:%d/voice" % node.voice_port,
                                              timeout=timeout)
        self.hello = self.recv(timeout)

    def recv(self, timeout=5.0):
        self.ws.settimeout(timeout)
        try:
            op, data = self.ws.recv_data(control_frame=False)
        except websocket.WebSocketTimeoutException:
            return None
        except websocket.WebSocketConnectionClosedException:
            return ("close", None)
        if op == websocket.ABNF.OPCODE_CLOSE:
            return ("close", struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None)
        return json.loads(data)

    def send(self, obj):
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def identify(self, token, timeout=5.0):
        self.send({"op": 0, "d": {"token": token}})
        return self.recv(timeout)

    def close(self):
        """A goodbye: close frame 1000 (the node ends the connection at once, D27)."""
        try:
            self.ws.close()
        except Exception:
            pass

    def drop(self):
        """A lost connection: the TCP socket closes without a close frame (resumable)."""
        try:
            self.ws.shutdown()
        except Exception:
            pass


def start_node(*args, **kw):
    """Starts a node or ends the script with one `not ok` naming why. db="<conninfo>" runs it
    durable (--db); see pglib.py for a throwaway cluster."""
    try:
        return Voxd(args, **kw).start()
    except Exception as e:
        not_ok("voxd starts (%s)" % " ".join(args), e)
        finish()


# ---- voxclient (the native voice client) ------------------------------------------------------
class VoxClient:
    """One build/voxclient process (env VOXCLIENT_BIN, default next to VOXD_BIN). Its stdout is
    the JSON report, its stderr the progress lines. Killed by its PID when the script ends."""

    def __init__(self, *args):
        self.bin = os.environ.get("VOXCLIENT_BIN") or os.path.join(
            os.path.dirname(os.environ.get("VOXD_BIN", "build/voxd")), "voxclient")
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen([self.bin] + self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _clients.append(self)
        self.out = self.err = None
        self.report = None

    def signal(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=30.0):
        """Returns (exit code, report dict or None); the report is also kept in self.report."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise Fail("voxclient %s did not end within %.0fs" % (" ".join(self.args), timeout))
        self.out, self.err = out.decode(errors="replace"), err.decode(errors="replace")
        for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if m in self.err:
                i = self.err.index(m)
                raise Fail("voxclient sanitizer report: %s" % self.err[i:i + 400])
        try:
            self.report = json.loads(self.out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.report = None
        return self.proc.returncode, self.report


_clients = []


def _kill_clients():
    for c in _clients:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()


atexit.register(_kill_clients)
