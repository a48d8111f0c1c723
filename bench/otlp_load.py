"""Load on the OTLP/HTTP receiver over loopback: spans per second accepted
and committed, and the receiver's peak memory, on this machine.

The requests are the OTLP sample (`agentledger sample --otlp --runs N`),
one request per sample line (25 runs, about 250 spans), sent as protobuf
(what the SDKs send) by several sender threads with keep-alive connections.
Two cases:

- fast lake: the receiver commits every 5 seconds, or at 50,000 spans, to a
  local lake: a fresh one, or with `--lake DIR` a copy of an existing lake
  (a deployment's receiver commits into a lake that already holds millions
  of events; each commit then probes its key index and refreshes its run
  parts). Printed: spans/s accepted (first request to last 200), spans/s
  committed (first request to the receiver's exit after SIGTERM, which
  commits the rest), events stored, peak RSS.
- slow lake: the committer is held off (a commit interval longer than the
  run and a span threshold above the input) and the spool is limited to a
  few MiB, as when the lake is slower than the senders: requests past the
  limit get 503 with Retry-After (counted), and the peak RSS shows memory
  stays bounded while they are refused.

Run it with the project's Python (scripts/python-env), which has the
OpenTelemetry protobuf classes.

Usage: python bench/otlp_load.py --bin target/release/agentledger
           [--runs 20000] [--senders 4] [--work DIR] [--lake DIR]
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def requests_of(path):
    out = []
    spans = 0
    with open(path) as f:
        for line in f:
            data = json.loads(line)
            for rs in data["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        spans += 1
                        for key in ("traceId", "spanId", "parentSpanId"):
                            if span.get(key):
                                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
            out.append(ParseDict(data, ExportTraceServiceRequest()).SerializeToString())
    return out, spans


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def start(binary, lake, spool, args):
    env = dict(os.environ, AGENTLEDGER_LAKE=lake)
    p = subprocess.Popen([binary, "serve", "--otlp", "127.0.0.1:0", "--spool", spool, *args],
                         env=env, stderr=subprocess.PIPE, text=True)
    while True:
        line = p.stderr.readline()
        if not line:
            raise SystemExit("the receiver stopped before it listened")
        m = re.search(r"listening on http://([0-9.]+):([0-9]+)/v1/traces", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, m.group(1), int(m.group(2))


def send_all(host, port, bodies, senders, watch_pid):
    """Sends every body until it is answered 200 (503 is retried after a
    pause); returns (seconds, refused count, peak RSS seen while sending)."""
    refused = [0]
    peak = [0.0]
    lock = threading.Lock()
    done = threading.Event()

    def sample_rss():
        while not done.is_set():
            rss = peak_rss_mb(watch_pid)
            if rss:
                peak[0] = max(peak[0], rss)
            time.sleep(0.2)

    def sender(k):
        try:
            send(k)
        except (OSError, http.client.HTTPException):
            if not done.is_set():
                raise

    def send(k):
        conn = http.client.HTTPConnection(host, port, timeout=120)
        for body in bodies[k::senders]:
            if done.is_set():
                return
            while True:
                try:
                    conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                    r = conn.getresponse()
                    r.read()
                except (OSError, http.client.HTTPException):
                    # A refused request's body is not read, so the server
                    # closes that connection: open another, as exporters do.
                    if done.is_set():
                        return
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=120)
                    continue
                if r.status == 200:
                    break
                if r.status == 503:
                    with lock:
                        refused[0] += 1
                    if done.is_set():
                        return
                    time.sleep(0.05)
                    continue
                raise SystemExit(f"status {r.status}")
        conn.close()

    threading.Thread(target=sample_rss, daemon=True).start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    return t0, threads, refused, peak, done


def count_events(binary, lake):
    out = subprocess.run([binary, "sql", "--format", "csv", "select count(*) from events"],
                         env=dict(os.environ, AGENTLEDGER_LAKE=lake), capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--work")
    ap.add_argument("--lake", help="an existing lake to copy and commit into (default: a fresh one)")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="otlp-load-")
    sample = os.path.join(work, "sample")
    subprocess.run([a.bin, "sample", "--otlp", "--out", sample, "--runs", str(a.runs)], check=True,
                   capture_output=True)
    bodies, spans = requests_of(os.path.join(sample, "traces.json"))
    mb = sum(len(b) for b in bodies) / 2**20
    print(f"{len(bodies)} requests, {spans} spans, {mb:.1f} MiB of protobuf; {a.senders} senders; {os.cpu_count()} cores")

    # Fast lake.
    lake, spool = os.path.join(work, "lake"), os.path.join(work, "spool")
    for d in (lake, spool):
        shutil.rmtree(d, ignore_errors=True)
    before = 0
    if a.lake:
        shutil.copytree(a.lake, lake)
        before = count_events(a.bin, lake)
        print(f"committing into a copy of {a.lake}: {before:,} events")
    p, host, port = start(a.bin, lake, spool, ["--commit-interval", "5"])
    t0, threads, refused, peak, done = send_all(host, port, bodies, a.senders, p.pid)
    for t in threads:
        t.join()
    accepted = time.perf_counter() - t0
    p.send_signal(15)
    p.wait(timeout=600)
    committed = time.perf_counter() - t0
    done.set()
    stored = count_events(a.bin, lake) - before
    print(f"fast lake: accepted {spans / accepted:,.0f} spans/s ({accepted:.1f} s), "
          f"committed {spans / committed:,.0f} spans/s ({committed:.1f} s to exit), "
          f"{stored:,} events stored, 503s {refused[0]}, peak RSS {peak[0]:.0f} MiB")

    # Slow lake: nothing is committed while they send; the spool fills.
    lake, spool = os.path.join(work, "lake-slow"), os.path.join(work, "spool-slow")
    for d in (lake, spool):
        shutil.rmtree(d, ignore_errors=True)
    limit = 8 << 20
    p, host, port = start(a.bin, lake, spool, ["--commit-interval", "3600", "--commit-spans", str(spans * 10),
                                                "--max-spool-bytes", str(limit)])
    t0, threads, refused, peak, done = send_all(host, port, bodies, a.senders, p.pid)
    # Refused for 20 s: the senders keep retrying; then the lake catches up
    # (SIGTERM commits, a new receiver takes the rest).
    time.sleep(20)
    rss_refusing = peak[0]
    done.set()
    spool_bytes = sum(os.path.getsize(os.path.join(spool, f)) for f in os.listdir(spool) if f.endswith(".jsonl"))
    print(f"slow lake: spool held at {spool_bytes / 2**20:.1f} MiB (limit {limit / 2**20:.0f} MiB), "
          f"{refused[0]} requests refused with 503 in 20 s, peak RSS {rss_refusing:.0f} MiB while refusing")
    for t in threads:
        t.join(timeout=5)
    p.send_signal(15)
    p.wait(timeout=600)


if __name__ == "__main__":
    main()
