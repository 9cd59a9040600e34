#!/usr/bin/python3
"""
Browser tests: Debian chromium driven by playwright-core (tests/browser/, installed by
scripts/install-deps.sh with `npm ci`) against a --dev node serving web/ (the demo page and
web/voxclient.js).

  tests/browser/smoke.mjs   always: the browser's own audio/WebRTC path, the demo page up to
                            Ready and Leave, a refused token.
  tests/browser/client.mjs  always: web/voxclient.js against a stand-in node (a WebSocket route
                            and a second page answering its offer): slots to mids, events,
                            resume, mute, leave.
  tests/browser/webrtc.mjs  always: the node's webrtc transport with real pages: two and three
                            pages hearing each other, leave notices, server mute, resume, a 45 s call,
                            the demo page in two tabs (screenshot), a browser and voxclient.

Each script gets its own node; its `ok` / `not ok` lines are forwarded under this file's name.
A script that hangs is killed (its whole process group: node and the chromium it started) after
its deadline and counted as a failure.
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from voxlib import RPC_SECRET, finish, not_ok, ok, start_node  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
WEB = os.path.join(ROOT, "web")
BROWSER = os.path.join(ROOT, "tests", "browser")
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node") or "/usr/bin/node"
LOGDIR = os.environ.get("VOXD_LOG_DIR") or "/tmp"


def prerequisites():
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append("%s (apt-get install chromium)" % CHROMIUM)
    if not os.access(NODE, os.X_OK):
        missing.append("node (Node.js)")
    if not os.path.isdir(os.path.join(BROWSER, "node_modules", "playwright-core")):
        missing.append("tests/browser/node_modules/playwright-core (npm ci in tests/browser)")
    return missing


def run_script(script, deadline_s, extra_env=None, node_args=()):
    """Starts a --dev node, runs `node tests/browser/<script>` against it, forwards its lines."""
    n = start_node("--dev", "--web-root", WEB, "--transport-reap", "5s", *node_args,
                   name=os.path.splitext(script)[0])
    env = dict(os.environ)
    env.update({
        "VOXD_VOICE_URL": "http://127.0.0.1:%d" % n.voice_port,
        "VOXD_RPC_URL": "http://127.0.0.1:%d" % n.rpc_port,
        "VOXD_RPC_SECRET": RPC_SECRET,
        "VOXD_ARTIFACTS": ARTIFACTS,
        "VOXD_RPC_SECRET_FILE": os.path.join(n.tmp, "rpc.secret"),
        "CHROMIUM": CHROMIUM,
        # the native client, for the browser + voxclient case (run only where it is built)
        "VOXCLIENT_BIN": os.path.join(os.path.dirname(os.path.abspath(n.bin)), "voxclient"),
    })
    env.update(extra_env or {})
    errpath = os.path.join(LOGDIR, "browser-%s-%d.stderr" % (script, os.getpid()))
    counts = {"ok": 0, "fail": 0}
    with open(errpath, "wb") as errf:
        proc = subprocess.Popen([NODE, os.path.join(BROWSER, script)], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf,
                                start_new_session=True)

        def pump():
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                if line.startswith("ok - "):
                    counts["ok"] += 1
                    ok(line[5:])
                elif line.startswith("not ok - "):
                    counts["fail"] += 1
                    rest = line[9:]
                    name, _, why = rest.partition(": ")
                    not_ok(name, why or "failed")
                elif line:
                    print("# %s: %s" % (script, line.lstrip("# ")), flush=True)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            code = proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            try:  # the script's process group: node and the chromium it launched
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            code = None
        t.join(5)
    tail = ""
    try:
        with open(errpath, "rb") as f:
            tail = " ".join(f.read()[-600:].decode(errors="replace").split())
    except OSError:
        pass
    if code is None:
        not_ok(script, "did not finish within %ds (killed); stderr: %s" % (deadline_s, tail))
    elif code != 0 and counts["fail"] == 0:
        not_ok(script, "exit code %s without a failing case; stderr: %s" % (code, tail))
    elif counts["ok"] + counts["fail"] == 0:
        not_ok(script, "ran no case; stderr: %s" % tail)
    if not n.alive():
        not_ok("%s: voxd still running after the browser" % script,
               "voxd exited %s" % n.proc.poll())
    n.stop(report=True)


missing = prerequisites()
if missing:
    not_ok("browser tests can run", "missing: %s; scripts/install-deps.sh installs them"
           % ", ".join(missing))
    finish()

os.makedirs(ARTIFACTS, exist_ok=True)
run_script("smoke.mjs", 120)
run_script("client.mjs", 120)
run_script("webrtc.mjs", 240)
finish()
