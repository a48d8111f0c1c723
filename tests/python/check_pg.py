"""Real PostgreSQL clients against `agentledger serve --pg` (SPEC section 9).

A lake is built from sample-data/, users are added with `agentledger user
add`, and the server is started on loopback. Checked, each against
`agentledger sql` on the same lake:

- psql: `\\dt`, `\\d events`, a metrics query;
- psycopg 3: server-side parameters and a prepared statement run again;
- SQLAlchemy + pandas `read_sql`;
- a tenant user's attack list: every table and view, UNION, joins, the
  catalogs, EXPLAIN, errors that would echo values, file-reading functions,
  COPY, CREATE EXTERNAL TABLE, a batch with one write in it;
- logins: a wrong password, an unknown user, a user without a verifier;
  no password in the audit log or the server's output;
- an ingest while connected is seen by the next statement;
- limits: the statement timeout, the per-query memory, the connection
  limit and the idle timeout each give a PostgreSQL error, and the server
  keeps answering.

Usage: check_pg.py AGENTLEDGER_BINARY PSQL
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd
import psycopg
import sqlalchemy
from checks import check, failed

BIN = sys.argv[1]
PSQL = sys.argv[2]
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample-data"
PASSWORDS = {"root": "r00t-Pw!", "ana": "an4lyst pw", "acme_user": "acme-Secret-9"}
OTHER_TENANTS = ["globex", "umbrella", "initech", "hooli", "acme corp"]


def agentledger(lake, *args, stdin=None, check_ok=True, extra_env=None):
    env = dict(os.environ, AGENTLEDGER_LAKE=lake, **(extra_env or {}))
    p = subprocess.run([BIN, *args], env=env, input=stdin, capture_output=True, text=True, timeout=600)
    if check_ok and p.returncode != 0:
        raise SystemExit(f"agentledger {args} failed: {p.stderr}")
    return p


def sql_json(lake, query):
    return json.loads(agentledger(lake, "sql", "--format", "json", query).stdout)


def start_server(lake, users, audit, *flags):
    server = subprocess.Popen(
        [BIN, "serve", "--pg", "127.0.0.1:0", "--users", users, "--audit-log", audit, *flags],
        env=dict(os.environ, AGENTLEDGER_LAKE=lake),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    output = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = server.stderr.readline()
        if not line:
            break
        output.append(line)
        m = re.search(r"PostgreSQL server listening on ([0-9.]+):([0-9]+)", line)
        if m:
            threading.Thread(target=lambda: [output.append(l) for l in server.stderr], daemon=True).start()
            return server, int(m.group(2)), output
    server.kill()
    raise SystemExit("the server did not start: " + "".join(output))


def psql(port, user, *args, password=None):
    env = dict(os.environ, PGPASSWORD=password if password is not None else PASSWORDS.get(user, ""))
    return subprocess.run(
        [PSQL, "-X", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "agentledger", "-v", "ON_ERROR_STOP=1", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )


def connect(port, user, password=None, **kw):
    return psycopg.connect(
        host="127.0.0.1", port=port, user=user, dbname="agentledger",
        password=password if password is not None else PASSWORDS[user], connect_timeout=10, **kw,
    )


def norm(v):
    """Values as both sides print them: numbers compared as decimals."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float, Decimal)):
        return Decimal(str(v)).normalize()
    s = str(v)
    try:
        return Decimal(s).normalize()
    except Exception:
        return s


def rows_equal(a, b):
    return [[norm(x) for x in r] for r in a] == [[norm(x) for x in r] for r in b]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        lake = os.path.join(tmp, "lake")
        agentledger(lake, "load", "prices", str(SAMPLE / "model_prices.csv"))
        agentledger(lake, "load", "plans", str(SAMPLE / "customer_plans.csv"))
        agentledger(lake, "load", "policies", str(SAMPLE / "workflow_policies.csv"))
        agentledger(lake, "ingest", str(SAMPLE / "events.ndjson"))
        users = os.path.join(tmp, "users.json")
        agentledger(lake, "user", "add", "root", "--role", "admin", "--users", users, stdin=PASSWORDS["root"] + "\n")
        agentledger(lake, "user", "add", "ana", "--role", "analyst", "--users", users, stdin=PASSWORDS["ana"] + "\n")
        agentledger(lake, "user", "add", "acme_user", "--role", "tenant", "--tenant", "acme", "--users", users,
                    stdin=PASSWORDS["acme_user"] + "\n")
        text = Path(users).read_text()
        check("the users file holds no password", not any(p in text for p in PASSWORDS.values()), text)
        data = json.loads(text)
        data["users"].append({"name": "noverifier", "role": "analyst"})
        Path(users).write_text(json.dumps(data))
        bad = agentledger(lake, "user", "add", "x", "--role", "tenant", "--users", users, stdin="pw\n", check_ok=False)
        check("a tenant user without tenants is refused", bad.returncode != 0 and "no tenants" in bad.stderr, bad.stderr)

        audit = os.path.join(tmp, "audit.jsonl")
        server, port, output = start_server(lake, users, audit)
        try:
            check_psql(lake, port)
            check_psycopg(lake, port)
            check_sqlalchemy(lake, port)
            check_bi_tools(port)
            check_tenant(lake, port, tmp)
            check_logins(port)
            check_fresh(lake, port, tmp)
        finally:
            server.send_signal(15)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        check("the server stops on SIGTERM with status 0", server.returncode == 0, server.returncode)
        everything = Path(audit).read_text() + "".join(output)
        leaked = [p for p in PASSWORDS.values() if p in everything]
        check("no password in the audit log or the server's output", not leaked, leaked)
        lines = [json.loads(l) for l in Path(audit).read_text().splitlines()]
        statements = [l for l in lines if "statement" in l]
        check("every statement line names user, outcome, rows and duration",
              statements and all({"time", "user", "role", "client", "statement", "outcome", "rows", "duration_ms"} <= l.keys() for l in statements),
              statements[:2])
        check("refusals are audited", any(l["outcome"] == "refused" and l["user"] == "acme_user" for l in statements))
        check("failed logins are audited",
              any(l.get("event") == "login" and l["outcome"] == "refused" and l["user"] == "ana" for l in lines))
        ok_rows = [l for l in statements if l["outcome"] == "ok" and l["rows"] > 0]
        check("rows are counted in the audit log", ok_rows, statements[:3])

        check_limits(lake, users, tmp)
        check_tls(lake, users, tmp)
    if failed():
        raise SystemExit(f"{failed()} check(s) failed")
    print("all PostgreSQL-wire checks passed")


def check_psql(lake, port):
    dt = psql(port, "root", "-c", "\\dt")
    check("psql \\dt lists the stored tables", dt.returncode == 0 and all(t in dt.stdout for t in ["events", "model_prices", "quarantine"]),
          dt.stdout + dt.stderr)
    d = psql(port, "root", "-c", "\\d events")
    check("psql \\d events lists its columns", d.returncode == 0 and all(c in d.stdout for c in ["tenant_id", "run_id", "event_type"]),
          d.stdout + d.stderr)
    query = "SELECT tenant_id, week, runs, successes, cost_usd FROM metrics ORDER BY tenant_id, week"
    got = psql(port, "root", "-A", "-t", "-F", "\t", "-c", query)
    want = [[r["tenant_id"], r["week"], r["runs"], r["successes"], r["cost_usd"]] for r in sql_json(lake, query)]
    rows = [line.split("\t") for line in got.stdout.splitlines() if line]
    check("psql: metrics equal agentledger sql", got.returncode == 0 and want and rows_equal(rows, want),
          f"{got.stderr}\n{rows[:3]}\n{want[:3]}")


def check_psycopg(lake, port):
    query = "SELECT run_id, count(*) AS n, sum(cost_usd) AS cost FROM model_calls WHERE tenant_id = %s GROUP BY run_id ORDER BY run_id"
    want_sql = query.replace("%s", "'globex'")
    want = [[r["run_id"], r["n"], r["cost"]] for r in sql_json(lake, want_sql)]
    with connect(port, "ana") as conn:
        with conn.cursor() as cur:
            cur.execute(query, ("globex",))
            got = cur.fetchall()
            check("psycopg: server-side parameters give agentledger sql's answer", want and rows_equal(got, want),
                  f"{got[:3]} {want[:3]}")
            check("psycopg: money arrives as exact decimals", all(isinstance(r[2], Decimal) for r in got), got[:1])
            for _ in range(3):
                cur.execute("SELECT count(*) FROM events WHERE tenant_id = %s AND event_type = %s", ("acme", "model_call"), prepare=True)
                n = cur.fetchone()[0]
            want_n = sql_json(lake, "SELECT count(*) AS n FROM events WHERE tenant_id = 'acme' AND event_type = 'model_call'")[0]["n"]
            check("psycopg: a prepared statement run three times", n == want_n, (n, want_n))


def check_sqlalchemy(lake, port):
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://ana:{PASSWORDS['ana'].replace(' ', '%20')}@127.0.0.1:{port}/agentledger")
    query = "SELECT tenant_id, count(*) AS events FROM events GROUP BY tenant_id ORDER BY tenant_id"
    frame = pd.read_sql(query, engine)
    want = sql_json(lake, query)
    got = frame.to_dict("records")
    check("SQLAlchemy + pandas read_sql equals agentledger sql",
          [(r["tenant_id"], int(r["events"])) for r in got] == [(r["tenant_id"], r["events"]) for r in want], (got[:3], want[:3]))
    engine.dispose()


def check_bi_tools(port):
    """The statements Grafana and Metabase send when they connect
    and browse the schema (tests/python/bi_connect_queries.json), over the
    extended protocol as their drivers send them, as an analyst and as a
    tenant user."""
    tools = json.loads((Path(__file__).parent / "bi_connect_queries.json").read_text())["tools"]
    for user in ["ana", "acme_user"]:
        for tool, queries in tools.items():
            failed_queries = []
            with connect(port, user, autocommit=True) as conn:
                for q in queries:
                    try:
                        conn.execute(q.replace("%", "%%")).fetchall() if q.lstrip().upper().startswith(("SELECT", "WITH", "SHOW")) \
                            else conn.execute(q.replace("%", "%%"))
                    except psycopg.Error as e:
                        failed_queries.append(f"{q[:80]!r}: {e}")
            check(f"{tool}'s connect queries run for {user}", not failed_queries, failed_queries[:3])


def check_tenant(lake, port, tmp):
    with connect(port, "acme_user", autocommit=True) as conn:
        cur = conn.cursor()

        def rows(sql, params=None):
            cur.execute(sql, params)
            return cur.fetchall()

        def refused(sql):
            try:
                cur.execute(sql)
                return None
            except psycopg.Error as e:
                return e

        tables = [r[0] for r in rows(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'tenant_id' AND table_schema = 'public'")]
        check("the tenant's catalog has the tables and views", {"events", "model_calls", "runs", "metrics", "margin"} <= set(tables), tables)
        seen = {}
        for t in sorted(set(tables)):
            seen[t] = {r[0] for r in rows(f"SELECT DISTINCT tenant_id FROM {t}")}
        check("every table and view shows only the tenant's rows (and policies for every tenant)",
              all(s <= {"acme", "*"} for s in seen.values()) and seen.get("events") == {"acme"}, seen)
        mine = rows("SELECT count(*) FROM events")[0][0]
        want = sql_json(lake, "SELECT count(*) AS n FROM events WHERE tenant_id = 'acme'")[0]["n"]
        check("the tenant's count equals its rows in the lake", mine == want, (mine, want))
        check("metrics are the tenant's metrics",
              rows_equal(rows("SELECT week, runs, cost_usd FROM metrics ORDER BY week"),
                         [[r["week"], r["runs"], r["cost_usd"]] for r in sql_json(lake, "SELECT week, runs, cost_usd FROM metrics WHERE tenant_id = 'acme' ORDER BY week")]))
        union = {r[0] for r in rows("SELECT tenant_id FROM events UNION SELECT tenant_id FROM runs UNION SELECT tenant_id FROM customer_plans")}
        check("UNION shows only the tenant", union == {"acme"}, union)
        joined = rows("SELECT DISTINCT m.tenant_id FROM model_calls m JOIN model_prices p ON m.model = p.model "
                      "FULL JOIN customer_plans c ON c.tenant_id = m.tenant_id")
        check("joins to reference tables show only the tenant", {r[0] for r in joined} <= {"acme", None}, joined)
        sub = rows("SELECT count(*) FROM events WHERE tenant_id IN (SELECT tenant_id FROM customer_plans WHERE tenant_id <> 'acme')")[0][0]
        check("a subquery for other tenants finds nothing", sub == 0, sub)
        q = rows("SELECT count(*) FROM information_schema.tables WHERE table_name = 'quarantine'")[0][0]
        check("the quarantine does not exist for a tenant", q == 0 and refused("SELECT * FROM quarantine") is not None, q)
        tuples = rows("SELECT coalesce(sum(reltuples), 0) FROM pg_catalog.pg_class")[0][0]
        check("pg_catalog holds no row counts", tuples == 0, tuples)
        e = refused("EXPLAIN SELECT * FROM events")
        check("EXPLAIN is refused for a tenant", e is not None and e.sqlstate == "42501", e)
        # Values of other tenants' rows: an error that quotes one leaks it.
        theirs = set()
        for r in sql_json(lake, "SELECT DISTINCT run_id, event_id, workflow FROM events WHERE tenant_id <> 'acme'"):
            theirs |= {r["run_id"], r["event_id"], r["workflow"]}
        ours = set()
        for r in sql_json(lake, "SELECT DISTINCT run_id, event_id, workflow FROM events WHERE tenant_id = 'acme'"):
            ours |= {r["run_id"], r["event_id"], r["workflow"]}
        theirs -= ours
        leaks = []
        for sql in [
            "SELECT * FROM events WHERE CAST(run_id AS INT) = 1",
            "SELECT * FROM events WHERE CAST(event_id AS INT) = 1",
            "SELECT count(*) FROM events WHERE event_type = 'model_call' AND CAST(run_id AS BIGINT) > 0",
            "SELECT * FROM model_calls WHERE CAST(run_id AS INT) = 1",
            "SELECT * FROM runs WHERE CAST(run_id AS INT) = 1",
            "SELECT CAST(tenant_id AS INT) FROM events",
            "SELECT * FROM events WHERE CAST(tenant_id AS INT) = 1",
            "SELECT * FROM runs WHERE CAST(tenant_id AS INT) > 0",
            "SELECT * FROM customer_plans WHERE CAST(tenant_id AS DOUBLE) > 0",
            "SELECT * FROM model_calls WHERE 1 / (CASE WHEN tenant_id = 'globex' THEN 0 ELSE 1 END) = 1 AND CAST(tenant_id AS INT) = 1",
            "SELECT read_parquet('/etc/passwd')",
            "SELECT * FROM read_csv('/etc/passwd')",
        ]:
            err = refused(sql)
            if err is None:
                leaks.append(f"{sql}: no error")
            elif (any(t in str(err) for t in OTHER_TENANTS) or "root:" in str(err)
                  or any(f"'{v}'" in str(err) for v in theirs)):
                leaks.append(f"{sql}: {err}")
        check("errors echo no other tenant's values and no file", not leaks, leaks)
        copy_target = os.path.join(tmp, "copied.csv")
        e = refused(f"COPY events TO '{copy_target}'")
        check("COPY ... TO is refused", e is not None and not os.path.exists(copy_target), e)
        e = refused("CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'")
        check("CREATE EXTERNAL TABLE is refused", e is not None, e)
        e = refused("SELECT 1 AS a INTO made_by_tenant")
        check("SELECT INTO is refused", e is not None and e.sqlstate == "25006", e)
    batch = "; ".join(["SELECT 1"] * 5 + ["DROP TABLE events"] + ["SELECT 2"] * 4)
    out = psql(port, "acme_user", "-c", batch)
    check("a 10-statement batch with one write is refused whole", out.returncode != 0 and "read-only" in out.stderr, out.stdout + out.stderr)
    with connect(port, "root") as conn:
        n = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    check("the lake is unchanged", n > 0, n)


def check_logins(port):
    for user, password, what in [("ana", "wrong", "a wrong password"), ("nobody", "x", "an unknown user"),
                                 ("noverifier", "anything", "a user without a verifier")]:
        try:
            connect(port, user, password=password).close()
            check(f"{what} is refused", False, "connected")
        except psycopg.OperationalError as e:
            check(f"{what} is refused", "password authentication failed" in str(e), e)
    out = psql(port, "ana", "-c", "SELECT 1", password="wrong")
    check("psql with a wrong password is refused", out.returncode != 0 and "password authentication failed" in out.stderr, out.stderr)


def check_fresh(lake, port, tmp):
    with connect(port, "acme_user", autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        new = os.path.join(tmp, "new.ndjson")
        with open(new, "w") as f:
            f.write(json.dumps({"event_id": "evt-pg-fresh-1", "event_type": "run_started", "ts": "2026-10-20T10:00:00Z",
                                "tenant_id": "acme", "run_id": "run-pg-fresh", "workflow": "support_reply",
                                "agent_version": "v1.4.0"}) + "\n")
        agentledger(lake, "ingest", new)
        after = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        check("an ingest is seen by the next statement without a restart", after == before + 1, (before, after))
        prepared = [conn.execute("SELECT count(*) FROM events WHERE run_id = %s", ("run-pg-fresh",), prepare=True).fetchone()[0]]
        with open(new, "w") as f:
            f.write(json.dumps({"event_id": "evt-pg-fresh-2", "event_type": "run_finished", "ts": "2026-10-20T10:05:00Z",
                                "tenant_id": "acme", "run_id": "run-pg-fresh", "outcome": "success"}) + "\n")
        agentledger(lake, "ingest", new)
        prepared.append(conn.execute("SELECT count(*) FROM events WHERE run_id = %s", ("run-pg-fresh",), prepare=True).fetchone()[0])
        check("a prepared statement reads the newest snapshot at each run", prepared == [1, 2], prepared)


def connect_when_free(port, user):
    """A connection at a server near its connection limit: a closed
    connection's place is free once the server has seen it close, which may
    be a moment after the client returns."""
    for attempt in range(50):
        try:
            return connect(port, user, autocommit=True)
        except psycopg.OperationalError as e:
            if "too many clients" not in str(e) or attempt == 49:
                raise
            time.sleep(0.1)


def check_limits(lake, users, tmp):
    audit = os.path.join(tmp, "audit-limits.jsonl")
    server, port, output = start_server(lake, users, audit, "--max-connections", "2", "--idle-timeout", "2",
                                        "--statement-timeout", "3", "--query-memory", "16M")
    try:
        with connect(port, "ana", autocommit=True) as conn:
            try:
                conn.execute("SELECT count(*) FROM range(0, 100000000000) a")
                check("the statement timeout ends a long query", False, "it finished")
            except psycopg.errors.QueryCanceled as e:
                check("the statement timeout ends a long query with 57014", True)
            try:
                conn.execute("SELECT array_agg(a.value) FROM range(0, 50000000) a")
                check("a query over the memory limit fails", False, "it finished")
            except psycopg.Error as e:
                check("a query over the memory limit fails with 53200", e.sqlstate == "53200", f"{e.sqlstate} {e}")
            n = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            check("the connection still answers after both", n > 0, n)
            with connect(port, "ana", autocommit=True) as second:
                try:
                    connect(port, "ana").close()
                    check("a third connection is refused at a limit of 2", False, "connected")
                except psycopg.OperationalError as e:
                    check("a third connection is refused with 53300", "too many clients" in str(e), e)
                second.execute("SELECT 1")
        idle = connect_when_free(port, "ana")
        idle.execute("SELECT 1")
        time.sleep(4)
        try:
            idle.execute("SELECT 1")
            check("an idle connection is closed", False, "still open")
        except psycopg.OperationalError as e:
            check("an idle connection is closed with 57P05 after the idle timeout",
                  "idle-session timeout" in str(e), e)
        with connect_when_free(port, "ana") as conn:
            check("the server answers new connections after all that", conn.execute("SELECT 1").fetchone()[0] == 1)
    finally:
        server.send_signal(15)
        server.wait(timeout=30)


def self_signed(cert_path, key_path):
    """A certificate for 127.0.0.1, valid for two days, and its key (PEM)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    Path(cert_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(key_path).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))


def check_tls(lake, users, tmp):
    cert, key = os.path.join(tmp, "server.crt"), os.path.join(tmp, "server.key")
    self_signed(cert, key)
    audit = os.path.join(tmp, "audit-tls.jsonl")
    server, port, _ = start_server(lake, users, audit, "--tls-cert", cert, "--tls-key", key)
    try:
        with connect(port, "ana", sslmode="require") as conn:
            ssl = conn.pgconn.ssl_in_use
            n = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        check("TLS: a client with sslmode=require connects over TLS and queries", ssl and n > 0, (ssl, n))
        with connect(port, "ana", sslmode="verify-full", sslrootcert=cert) as conn:
            check("TLS: the certificate verifies", conn.pgconn.ssl_in_use)
    finally:
        server.send_signal(15)
        server.wait(timeout=30)
    for bad_cert, bad_key, says in [(os.path.join(tmp, "missing.crt"), key, "missing.crt"), (key, key, "certificate")]:
        p = subprocess.run([BIN, "serve", "--pg", "127.0.0.1:0", "--users", users, "--tls-cert", bad_cert, "--tls-key", bad_key],
                           env=dict(os.environ, AGENTLEDGER_LAKE=lake), capture_output=True, text=True, timeout=60)
        check(f"TLS: an unusable certificate stops the server ({says})",
              p.returncode != 0 and says in p.stderr and "does not start without" in p.stderr, p.stderr[-400:])


if __name__ == "__main__":
    main()
