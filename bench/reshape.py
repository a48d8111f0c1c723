#!/usr/bin/env python3
"""Differently shaped event files for the ingest benchmark.

`agentledger sample` writes every line the same way: compact JSON, keys in
one order, few attributes. Producers in the field do not. This rewrites a
sample's events.ndjson into the same events as other producers would write
them, so that ingest is measured on more than one shape of input:

- keys in a different order on every line (event_id not first);
- white space after colons and commas on about half the lines, and
  non-ASCII text escaped (`\\u00e9`) on about a third;
- unknown top-level fields on about 40% of lines (an SDK name, trace and
  span ids, a nested `host` object): agentledger keeps them inside
  `attributes`;
- nested `attributes` on about half the lines (a request with headers and
  a list of tags, a user with a locale, retry counts, a sampled flag, text
  with accents), merged with the attributes the event had;
- timestamps already in UTC moved to another offset on about a third of the
  lines (the same instant), and some with microseconds;
- `cost_usd` written as a JSON number instead of a decimal string on about
  half the lines that have one (agentledger reads the number's digits
  exactly).

The events stay the same events (same ids, instants, amounts and fields), so
the metrics of a lake made from the reshaped file equal those of the
original, which `bench/compare.py --shape reshaped` checks against DuckDB's
and Polars'. Deterministic: the same input and seed give the same bytes.

    python bench/reshape.py IN_DIR OUT_DIR [--seed 7]

IN_DIR is an `agentledger sample --out` folder; OUT_DIR gets the reshaped
events.ndjson and copies of the reference CSVs.
"""

import argparse
import datetime
import json
import random
import shutil
from pathlib import Path

SDKS = ["agentkit-py/2.3.1", "agentkit-js/1.9.0", "otel-bridge/0.4.2", "custom-go/0.1.0"]
ROUTES = ["/v1/chat", "/v1/tools/run", "/v1/approve", "/v1/runs"]
LOCALES = ["en-GB", "fr-FR", "de-DE", "ja-JP", "pt-BR"]
NOTES = ["café au lait ✓", "Grüße aus Köln", "naïve façade", "東京 tokyo", "plain ascii note"]
OFFSETS = [-8, -5, -3, 1, 2, 5, 9]


def reshape_line(event, rng):
    # Timestamps: the same instant at another offset, sometimes with microseconds.
    ts = event.get("ts")
    if isinstance(ts, str) and ts.endswith("Z") and rng.random() < 0.35:
        instant = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        tz = datetime.timezone(datetime.timedelta(hours=rng.choice(OFFSETS)))
        local = instant.astimezone(tz)
        spec = "microseconds" if instant.microsecond else "seconds"
        event["ts"] = local.isoformat(timespec=spec)
    # Money as a JSON number: the same digits.
    cost = event.get("cost_usd")
    if isinstance(cost, str) and rng.random() < 0.5:
        event["cost_usd"] = RawNumber(cost)
    # Nested attributes, merged with the event's own.
    if rng.random() < 0.5:
        attrs = dict(event.get("attributes") or {})
        attrs["request"] = {
            "route": rng.choice(ROUTES),
            "headers": {"x-request-id": f"{rng.getrandbits(64):016x}", "x-retry": rng.randint(0, 3)},
            "tags": rng.sample(["beta", "eu", "priority", "batch", "canary"], k=rng.randint(0, 3)),
        }
        attrs["user"] = {"tier": rng.choice(["free", "pro", "enterprise"]), "locale": rng.choice(LOCALES)}
        attrs["sampled"] = rng.random() < 0.5
        attrs["note"] = rng.choice(NOTES)
        event["attributes"] = attrs
    # Unknown top-level fields.
    if rng.random() < 0.4:
        event["sdk"] = rng.choice(SDKS)
        event["trace_id"] = f"{rng.getrandbits(128):032x}"
        event["span_id"] = f"{rng.getrandbits(64):016x}"
        event["host"] = {"name": f"worker-{rng.randint(1, 64)}", "zone": rng.choice(["a", "b", "c"])}
    keys = list(event)
    rng.shuffle(keys)
    ordered = {k: event[k] for k in keys}
    spaced = rng.random() < 0.5
    return dumps(ordered, spaced=spaced, ascii_only=rng.random() < 0.33)


class RawNumber(str):
    """A decimal string to be written as a JSON number, digits unchanged."""


def dumps(value, spaced, ascii_only):
    colon, comma = (": ", ", ") if spaced else (":", ",")
    if isinstance(value, RawNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + comma.join(
            json.dumps(k, ensure_ascii=ascii_only) + colon + dumps(v, spaced, ascii_only)
            for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + comma.join(dumps(v, spaced, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def reshape(in_dir, out_dir, seed=7):
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for csv in in_dir.glob("*.csv"):
        shutil.copy(csv, out_dir / csv.name)
    rng = random.Random(seed)
    tmp = out_dir / "events.ndjson.part"
    with open(in_dir / "events.ndjson", encoding="utf-8") as src, \
            open(tmp, "w", encoding="utf-8") as dst:
        for line in src:
            if line.strip():
                dst.write(reshape_line(json.loads(line, parse_float=RawNumber), rng) + "\n")
    tmp.rename(out_dir / "events.ndjson")
    return out_dir


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("in_dir")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    reshape(args.in_dir, args.out_dir, args.seed)


if __name__ == "__main__":
    main()
