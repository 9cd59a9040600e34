"""
tests/integration/pglib.py — a throwaway PostgreSQL cluster for the durable-node tests.

    pg = pglib.cluster()                 # scripts/pg.sh start $(mktemp -d): its conninfo
    node = start_node(..., db=pg.conninfo)
    pg.crash()                           # pg_ctl -m immediate (data kept)
    pg.start()                           # the same cluster again
    pg.sql("SELECT ...")                 # psql as postgres: rows as lists of strings
    pg.sql_background("BEGIN; LOCK ...") # psql without waiting (a Popen to wait for)
    pglib.readyz(node), pglib.metric(node, "voxd_store_up")

Every cluster made here is stopped and its folder removed when the script ends — finish(), a
normal exit or an exception (voxlib's on_finish hook, which runs after the nodes have stopped, and
atexit) — and also on SIGTERM/SIGINT from run-all.sh's timeout. The server listens only on a Unix
socket inside its own mktemp folder (scripts/pg.sh), so it cannot collide with anything.
"""

import os
import signal
import subprocess
import sys
import tempfile

import voxlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PG_SH = os.path.join(ROOT, "scripts", "pg.sh")
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")

_clusters = []


def _as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + cmd


class Cluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="voxd-pg-")
        self.conninfo = None
        _clusters.append(self)

    def _pg_sh(self, verb, timeout=90):
        r = subprocess.run([PG_SH, verb, self.dir], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("scripts/pg.sh %s %s: exit %d: %s" % (
                verb, self.dir, r.returncode, r.stderr.decode(errors="replace")[-600:]))
        return r.stdout.decode().strip()

    def start(self):
        """initdb (first time) and start; returns the conninfo."""
        out = self._pg_sh("start")
        self.conninfo = out.splitlines()[-1]
        return self.conninfo

    def crash(self):
        """pg_ctl -m immediate: the server dies without a checkpoint; the data stays."""
        self._pg_sh("crash")

    def halt(self):
        """pg_ctl -m fast stop, keeping the data."""
        subprocess.run(_as_pg([os.path.join(PGBIN, "pg_ctl"), "-D", os.path.join(self.dir, "data"),
                               "-m", "fast", "-w", "-t", "60", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)

    def running(self):
        r = subprocess.run(_as_pg([os.path.join(PGBIN, "pg_ctl"), "-D",
                                   os.path.join(self.dir, "data"), "status"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        return r.returncode == 0

    def stop(self):
        """Stops the server and removes its folder (idempotent)."""
        if self in _clusters:
            _clusters.remove(self)
        self._pg_sh("stop")

    def sql(self, query, timeout=30):
        """Runs one query with psql (as postgres); returns the rows as lists of strings."""
        r = subprocess.run(_as_pg(["psql", self.conninfo, "-X", "-A", "-t", "-q", "-F", "\t",
                                   "-v", "ON_ERROR_STOP=1", "-c", query]),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        if r.returncode != 0:
            raise voxlib.Fail("psql %r: %s" % (query, r.stderr.decode(errors="replace").strip()))
        return [ln.split("\t") for ln in r.stdout.decode().splitlines() if ln != ""]

    def sql_background(self, query):
        """Starts psql on one query without waiting (e.g. a transaction that holds a lock);
        returns the Popen: the caller waits for it (bounded) and ends it by its PID."""
        return subprocess.Popen(_as_pg(["psql", self.conninfo, "-X", "-q", "-o", "/dev/null",
                                        "-v", "ON_ERROR_STOP=1", "-c", query]),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _stop_all():
    for c in list(_clusters):
        try:
            c.stop()
        except Exception as e:  # reported, but the other clusters are still stopped
            print("# pglib: stopping %s failed: %s" % (c.dir, e), file=sys.stderr)


voxlib.on_finish(_stop_all)


def _on_signal(signum, _frame):
    voxlib._stop_all()
    _stop_all()
    os._exit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_s, _on_signal)


def cluster():
    """A started throwaway cluster, or the script ends with one `not ok` naming why."""
    c = Cluster()
    try:
        c.start()
    except Exception as e:
        voxlib.not_ok("postgres starts (scripts/pg.sh start)", e)
        voxlib.finish()
    return c


def readyz(node):
    """(status, parsed body) of GET /readyz."""
    import json
    st, _, body = node.http("GET", "/readyz", timeout=5.0)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def metric(node, name, labels=None):
    """The value of one sample of /metrics (labels: dict that must match exactly), or None."""
    text, _ = node.metrics_text()
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        key, _, val = line.rpartition(" ")
        if "{" in key:
            mname, _, rest = key.partition("{")
            lab = {}
            for part in rest.rstrip("}").split(","):
                if "=" in part:
                    k, _, v = part.partition("=")
                    lab[k.strip()] = v.strip().strip('"')
        else:
            mname, lab = key, {}
        if mname == name and (labels is None or lab == labels):
            return float(val)
    return None
