"""The real OpenTelemetry Python SDK against agentledger (SPEC section 7).

The SDK (opentelemetry-sdk with the OTLP/HTTP protobuf exporter) exports
GenAI spans for a few hundred runs to `agentledger serve --otlp` over
loopback, and the same spans to a file as OTLP/JSON (one TracesData per
export, as the Collector's file exporter writes them). The same runs are
written by hand as SPEC section 1 NDJSON. Checked:

- the file ingested and the spans received store the same events;
- `metrics --by tenant_id,week` is the same for all three lakes;
- ingesting the file again stores nothing;
- a span without a model and one with negative tokens are quarantined with
  their trace and span id; an HTTP span is counted as skipped.

Usage: check_otel.py AGENTLEDGER_BINARY
"""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from checks import check, failed

BIN = sys.argv[1]
RUNS = 300


class FileExporter(SpanExporter):
    """OTLP/JSON lines: the protobuf message in its JSON mapping, with
    ids in hex and enums as integers, as OTLP/JSON requires."""

    def __init__(self, path):
        self.out = open(path, "w")
        self.lock = threading.Lock()

    def export(self, spans):
        data = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
        for rs in data.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in span:
                            span[key] = base64.b64decode(span[key]).hex()
        with self.lock:
            self.out.write(json.dumps(data, separators=(",", ":")) + "\n")
            self.out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.out.close()


def agentledger(lake, *args, check_ok=True):
    env = dict(os.environ, AGENTLEDGER_LAKE=lake)
    p = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=600)
    if check_ok and p.returncode != 0:
        raise SystemExit(f"agentledger {args} failed: {p.stderr}")
    return p.stdout


def iso(ns):
    micros = ns // 1000
    secs, frac = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:06d}Z"


def main():
    tmp = tempfile.mkdtemp(prefix="agentledger-otel-")
    lakes = {k: os.path.join(tmp, k) for k in ("http", "file", "ndjson")}
    here = os.path.dirname(os.path.abspath(__file__))
    prices = os.path.join(here, "..", "..", "sample-data", "model_prices.csv")
    for lake in lakes.values():
        agentledger(lake, "load", "prices", prices)

    env = dict(os.environ, AGENTLEDGER_LAKE=lakes["http"])
    server = subprocess.Popen(
        [BIN, "serve", "--otlp", "127.0.0.1:0", "--spool", os.path.join(tmp, "spool"), "--commit-interval", "1"],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    addr = None
    deadline = time.time() + 60
    while addr is None and time.time() < deadline:
        line = server.stderr.readline()
        m = re.search(r"listening on http://([0-9.:]+)/v1/traces", line)
        if m:
            addr = m.group(1)
    if addr is None:
        raise SystemExit("the receiver did not say where it listens")
    threading.Thread(target=lambda: [sys.stderr.write("serve: " + l) for l in server.stderr], daemon=True).start()

    file_path = os.path.join(tmp, "traces.json")
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot", "service.version": "2.0.1"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://{addr}/v1/traces"), max_export_batch_size=200))
    provider.add_span_processor(BatchSpanProcessor(FileExporter(file_path), max_export_batch_size=300))
    tracer = provider.get_tracer("check_otel")

    lines = []
    t = 1_791_194_400_000_000_000  # 2026-10-05T10:00:00Z
    tenants = ["acme", "globex", "initech"]
    models = ["gpt-4.1", "gemini-2.5-flash", "claude-sonnet-4"]
    bad_ids = []
    for i in range(RUNS):
        tenant = tenants[i % 3]
        run_id = f"run-{i:04d}"
        t += 3_600_000_000_000 // 4  # a run every 15 minutes, over about 3 days
        start = t
        common = {"agentledger.tenant_id": tenant, "agentledger.run_id": run_id}
        root = tracer.start_span("invoke_agent support", start_time=start, attributes={
            **common, "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support_reply",
        })
        ctx = trace.set_span_in_context(root)
        lines.append({"event_id": f"{run_id}-start", "event_type": "run_started", "ts": iso(start), "tenant_id": tenant,
                      "run_id": run_id, "workflow": "support_reply", "agent_version": "2.0.1"})
        at = start
        for c in range(1 + i % 3):
            at += 1_234_567_891
            model = models[(i + c) % 3]
            inp, out, cached = 1000 + 37 * i, 200 + c, (100 * c)
            latency_ns = 987_654_321 + c
            error = (i + c) % 17 == 0
            s = tracer.start_span(f"chat {model}", context=ctx, start_time=at, attributes={
                **common, "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": inp,
                "gen_ai.usage.output_tokens": out, "gen_ai.usage.cache_read.input_tokens": cached,
                "gen_ai.input.messages": "[{\"role\":\"user\",\"content\":\"secret\"}]",
            })
            if error:
                s.set_status(Status(StatusCode.ERROR))
            s.end(end_time=at + latency_ns)
            ev = {"event_id": f"{run_id}-m{c}", "event_type": "model_call", "ts": iso(at), "tenant_id": tenant,
                  "run_id": run_id, "model": model, "provider": "openai", "input_tokens": inp, "output_tokens": out,
                  "cached_input_tokens": cached, "latency_ms": latency_ns // 1_000_000}
            if error:
                ev["status"] = "error"
            lines.append(ev)
        at += 500_000_000
        tool_status = ["ok", "error", "timeout"][i % 3] if i % 5 == 0 else "ok"
        s = tracer.start_span("execute_tool crm.lookup", context=ctx, start_time=at, attributes={
            **common, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "crm.lookup",
            "agentledger.tool.access": "read", "agentledger.cost_usd": "0.0015",
        })
        if tool_status == "timeout":
            s.set_attribute("error.type", "TimeoutError")
            s.set_status(Status(StatusCode.ERROR))
        elif tool_status == "error":
            s.set_attribute("error.type", "ValueError")
            s.set_status(Status(StatusCode.ERROR))
        s.end(end_time=at + 42_000_000)
        lines.append({"event_id": f"{run_id}-t", "event_type": "tool_call", "ts": iso(at), "tenant_id": tenant,
                      "run_id": run_id, "tool": "crm.lookup", "access": "read", "status": tool_status,
                      "latency_ms": 42, "cost_usd": "0.0015"})
        if i % 7 == 0:
            at += 1_000_000
            root.add_event("agentledger.policy_block", {"tool": "refund.issue", "rule": "no_refund_over_500"}, timestamp=at)
            lines.append({"event_id": f"{run_id}-p", "event_type": "policy_block", "ts": iso(at), "tenant_id": tenant,
                          "run_id": run_id, "tool": "refund.issue", "rule": "no_refund_over_500"})
        # Not GenAI: counted as skipped.
        tracer.start_span("GET /crm", context=ctx, start_time=at, attributes={"http.method": "GET"}).end(end_time=at + 1)
        if i % 50 == 0:
            # Bad spans: no model; negative tokens.
            b1 = tracer.start_span("chat", context=ctx, start_time=at, attributes={
                **common, "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 1})
            b1.end(end_time=at + 1)
            b2 = tracer.start_span("chat", context=ctx, start_time=at, attributes={
                **common, "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1",
                "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": -3})
            b2.end(end_time=at + 1)
            for b in (b1, b2):
                bad_ids.append((format(b.get_span_context().trace_id, "032x"), format(b.get_span_context().span_id, "016x")))
        end = at + 2_000_000_000
        outcome = "success" if i % 4 else "failure"
        if i % 11 != 0:  # now and then an open run
            root.set_attribute("agentledger.run.outcome", outcome)
            lines.append({"event_id": f"{run_id}-end", "event_type": "run_finished", "ts": iso(end), "tenant_id": tenant,
                          "run_id": run_id, "outcome": outcome})
        root.end(end_time=end)
    provider.shutdown()  # flushes both exporters

    server.send_signal(15)
    code = server.wait(timeout=120)
    check("the receiver exits 0 after SIGTERM", code == 0, code)

    ndjson = os.path.join(tmp, "events.ndjson")
    with open(ndjson, "w") as f:
        for ev in lines:
            f.write(json.dumps(ev) + "\n")
    agentledger(lakes["ndjson"], "ingest", ndjson)
    summary = json.loads(agentledger(lakes["file"], "ingest", "--format", "json", file_path))
    otlp = summary.get("otlp", {})
    check("the file is read as OTLP by its content", otlp.get("spans_read", 0) > RUNS * 4, summary)
    check("HTTP spans are counted as skipped", otlp.get("spans_skipped") == RUNS, otlp)
    check("read = stored + duplicate + quarantined",
          summary["read"] == summary["stored"] + summary["duplicate"] + summary["quarantined"], summary)
    check("the bad spans are quarantined", summary["quarantined"] == len(bad_ids), summary)

    all_events = "SELECT * EXCLUDE (source, line, ingest_id, ingested_at) FROM events ORDER BY event_id"
    by_http = agentledger(lakes["http"], "sql", "--format", "csv", all_events)
    by_file = agentledger(lakes["file"], "sql", "--format", "csv", all_events)
    check("received over HTTP and ingested from the file: the same events", by_http == by_file,
          f"{len(by_http.splitlines())} vs {len(by_file.splitlines())} lines")
    check("the events are there", len(by_file.splitlines()) > RUNS * 4, len(by_file.splitlines()))
    check("message contents are not stored", "secret" not in by_file and "secret" not in by_http)

    metrics = ["metrics", "--by", "tenant_id,week", "--format", "csv"]
    m_http, m_file, m_lines = (agentledger(lakes[k], *metrics) for k in ("http", "file", "ndjson"))
    check("metrics: HTTP = file", m_http == m_file, f"\n{m_http}\n{m_file}")
    check("metrics: spans = hand-written NDJSON", m_file == m_lines, f"\n{m_file}\n{m_lines}")
    check("metrics have rows", len(m_file.splitlines()) > 3, m_file)

    again = json.loads(agentledger(lakes["file"], "ingest", "--format", "json", file_path))
    check("the same spans again store nothing", again["stored"] == 0 and again["quarantined_new"] == 0, again)

    rows = json.loads(agentledger(lakes["http"], "sql", "--format", "json",
                                  "SELECT reason, message FROM quarantine ORDER BY message"))
    for trace_id, span_id in bad_ids:
        hit = [r for r in rows if f"trace {trace_id} span {span_id}:" in r["message"]]
        check(f"span {span_id} is quarantined with its ids", len(hit) == 1, rows[:3])
    reasons = sorted({r["reason"] for r in rows})
    check("missing model and negative tokens", reasons == ["missing_field", "out_of_range"], reasons)

    print(f"{'FAILED' if failed() else 'passed'}: {failed()} failure(s)")
    sys.exit(1 if failed() else 0)


main()
