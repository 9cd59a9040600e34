#!/usr/bin/python3
"""
Schema migrations at node level (issue 3): a node started twice on the same database works and
applies nothing the second time (voxd_schema_migrations has one row per store/migrations/*.sql);
a database left at an older migration level is upgraded by the node; a durable node exits 0 on
SIGTERM with what it acknowledged committed.
"""
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pglib  # noqa: E402
from voxlib import Voxd, case, expect, finish, snowflake, wait_until  # noqa: E402

MIGRATIONS = sorted(os.path.basename(p)[:-4] for p in
                    glob.glob(os.path.join(pglib.ROOT, "store", "migrations", "[0-9]*.sql")))
EXPECTED = [[str(int(m.split("_", 1)[0])), m.split("_", 1)[1]] for m in MIGRATIONS]
S = {}


def boot(pg, name):
    n = Voxd(("--pending-timeout", "600s"), db=pg.conninfo, name=name).start()
    wait_until(lambda: pglib.readyz(n)[0] == 200, 20, 0.02, "%s: /readyz 200" % name)
    return n


def log_of(n):
    with open(n.log_path, errors="replace") as f:
        return f.read()


def applied(n):
    return [ln.split("applying migration ", 1)[1].split('"')[0] for ln in log_of(n).splitlines()
            if "applying migration " in ln]


pg = pglib.cluster()


@case("first start on an empty database applies every migration once (%s)" % ", ".join(MIGRATIONS))
def _():
    expect(len(MIGRATIONS) >= 3, "migrations found: %s" % MIGRATIONS)
    n = boot(pg, "voxd-first")
    S["n"] = n
    expect(applied(n) == MIGRATIONS, "applied %s" % applied(n))
    rows = pg.sql("SELECT version, name FROM voxd_schema_migrations ORDER BY version")
    expect(rows == EXPECTED, "voxd_schema_migrations %s, expected %s" % (rows, EXPECTED))
    G, C, U = snowflake(), snowflake(), snowflake()
    r = n.rpc_ok("voice.connect", {"guild_id": G, "channel_id": C, "user_id": U, "session_id": "s"})
    vs = r["voice_state"]
    r = n.rpc_ok("voice.update", {"connection_id": vs["connection_id"], "user_id": U,
                                  "self_deaf": True})
    S["vs"] = r["voice_state"]
    S["G"] = G


@case("a durable node exits 0 on SIGTERM")
def _():
    code = S["n"].stop()
    expect(code == 0, "exit code %s; log tail: %s" % (code, log_of(S["n"])[-400:]))


@case("second start on the same database: no migration applied, one row per migration, state back")
def _():
    n = boot(pg, "voxd-second")
    expect(applied(n) == [], "applied again: %s" % applied(n))
    rows = pg.sql("SELECT version, name FROM voxd_schema_migrations ORDER BY version")
    expect(rows == EXPECTED, "voxd_schema_migrations %s, expected %s" % (rows, EXPECTED))
    got = n.rpc_ok("voice.get", {"guild_id": S["G"]})["voice_states"]
    expect(got == [S["vs"]], "voice.get after restart %s, expected [%s]" % (got, S["vs"]))
    r = n.rpc_ok("voice.update", {"connection_id": S["vs"]["connection_id"],
                                  "user_id": S["vs"]["user_id"], "self_deaf": False})
    expect(r["voice_state"]["version"] == S["vs"]["version"] + 1, "update after restart %s" % r)
    expect(n.stop() == 0, "second node's exit code %s" % n.exit_code)


@case("a database at an older migration level (only %s) is upgraded by the node" % MIGRATIONS[0])
def _():
    old = pglib.cluster()
    first = MIGRATIONS[0]
    with open(os.path.join(pglib.ROOT, "store", "migrations", first + ".sql")) as f:
        sql = f.read()
    old.sql("CREATE TABLE voxd_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())")
    old.sql(sql + "\n;INSERT INTO voxd_schema_migrations (version, name) VALUES (%s, '%s')" %
            tuple(EXPECTED[0]))
    n = boot(old, "voxd-upgrade")
    expect(applied(n) == MIGRATIONS[1:], "applied %s, expected %s" % (applied(n), MIGRATIONS[1:]))
    rows = old.sql("SELECT version, name FROM voxd_schema_migrations ORDER BY version")
    expect(rows == EXPECTED, "voxd_schema_migrations %s, expected %s" % (rows, EXPECTED))
    G = snowflake()
    n.rpc_ok("voice.connect", {"guild_id": G, "channel_id": snowflake(), "user_id": snowflake(),
                               "session_id": "s"})
    cnt = old.sql("SELECT count(*) FROM voxd_voice_states WHERE data::jsonb->>'guild_id' = '%s'" % G)
    expect(cnt == [["1"]], "rows in voxd_voice_states for the new connection: %s" % cnt)
    expect(n.stop() == 0, "exit code %s" % n.exit_code)
    old.stop()


finish()
