#!/usr/bin/env python3
"""Opens the weekly report in headless Chromium and checks that it renders.

Usage: check_report.py AGENTLEDGER CHROMIUM

Builds a lake from sample-data/ (events and the three reference tables),
writes the report of 2026-W43, then:
  1. takes a screenshot of report.html (kept as report-screenshot.png in the
     report folder, for a person to look at);
  2. loads a copy of the page with a small script appended that reports, for
     every <img>, whether it loaded (complete, natural size > 0) and its
     rendered size, and checks each one is visible;
  3. checks the page made no network request: it is self-contained;
  4. checks the readiness section as rendered: one block per workflow, each
     with its three conditions, a ready one and one that is not, and links
     from offending runs to timeline pages that exist next to the report;
  5. opens one such timeline page (screenshot too) and checks it renders
     the policy in force, the events in order with a running total, every
     breach marked and visible, and fetches nothing.
Only the standard library is used; Chromium is Debian's package.
"""

import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEEK = "2026-W43"

PROBE = """
<script>
window.addEventListener('load', function () {
  var out = [];
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i];
    var r = img.getBoundingClientRect();
    out.push({alt: img.alt, complete: img.complete, natural_width: img.naturalWidth,
              natural_height: img.naturalHeight, width: r.width, height: r.height});
  }
  var visible = function (el) { var r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  var blocks = [];
  document.querySelectorAll('div.readiness').forEach(function (d) {
    var conditions = [];
    d.querySelectorAll('table.conditions tbody tr').forEach(function (tr) {
      conditions.push({name: tr.cells[0].textContent.trim(), verdict: tr.cells[1].textContent.trim()});
    });
    var links = [];
    d.querySelectorAll('table.offenders tbody tr').forEach(function (tr) {
      var a = tr.querySelector('a');
      if (a) links.push({href: a.getAttribute('href'), condition: tr.cells[0].textContent.trim()});
    });
    blocks.push({heading: d.querySelector('h3').textContent.trim(), visible: visible(d),
                 conditions: conditions, measures: d.querySelectorAll('table.measures tbody tr').length,
                 links: links});
  });
  var events = [];
  document.querySelectorAll('#events tbody tr').forEach(function (tr) {
    events.push({n: tr.cells[0].textContent.trim(), ts: tr.cells[1].textContent.trim(),
                 running: tr.cells[5].textContent.trim(), breach: tr.className === 'breach',
                 marks: Array.prototype.map.call(tr.querySelectorAll('.mark'), function (m) {
                   return {text: m.textContent.trim(), visible: visible(m), color: getComputedStyle(m).color}; })});
  });
  var policy = document.getElementById('policy');
  var breaches = document.querySelectorAll('#breaches li').length;
  var pre = document.createElement('pre');
  pre.id = 'probe-result';
  pre.textContent = 'PROBE' + JSON.stringify({images: out, title: document.title,
    readiness: blocks, events: events, policy: policy ? policy.textContent.trim() : null, breaches: breaches,
    height: document.body.scrollHeight, resources: performance.getEntriesByType('resource').map(function (e) { return e.name; })}) + 'EBORP';
  document.body.appendChild(pre);
});
</script>
"""


def chromium_args(chromium, profile):
    return [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
    ]


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, **kw)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def probe(chromium, profile, page):
    """Loads a copy of `page` with PROBE appended; returns what it reports."""
    probe_page = page[:-len(".html")] + "-probe.html"
    with open(page, encoding="utf-8") as f:
        text = f.read()
    with open(probe_page, "w", encoding="utf-8") as f:
        f.write(text.replace("</body>", PROBE + "</body>"))
    dom = run(chromium_args(chromium, profile) + [
        "--virtual-time-budget=5000", "--window-size=1200,900", "--dump-dom", "file://" + probe_page])
    os.remove(probe_page)
    found = re.search(r'<pre id="probe-result">PROBE(.*?)EBORP</pre>', dom, re.S)
    assert found, "the probe did not run:\n" + dom[-2000:]
    return json.loads(html_lib.unescape(found.group(1)))


def main():
    agentledger, chromium = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="agentledger-browser-")
    try:
        lake = os.path.join(work, "lake")
        out = os.path.join(work, "report")
        sample = os.path.join(ROOT, "sample-data")
        run([agentledger, "--lake", lake, "load", "prices", os.path.join(sample, "model_prices.csv")])
        run([agentledger, "--lake", lake, "load", "plans", os.path.join(sample, "customer_plans.csv")])
        run([agentledger, "--lake", lake, "load", "policies", os.path.join(sample, "workflow_policies.csv")])
        run([agentledger, "--lake", lake, "ingest", os.path.join(sample, "events.ndjson")])
        run([agentledger, "--lake", lake, "report", "--week", WEEK, "--out", out])
        page = os.path.join(out, "report.html")

        profile = os.path.join(work, "profile")
        shot = os.path.join(out, "report-screenshot.png")
        run(chromium_args(chromium, profile) + [
            f"--screenshot={shot}", "--window-size=1200,2400", "file://" + page])
        with open(shot, "rb") as f:
            png = f.read()
        assert png.startswith(b"\x89PNG") and len(png) > 20000, "the screenshot is empty"

        result = probe(chromium, profile, page)
        images = result["images"]
        assert len(images) == 4, f"expected 4 charts, found {len(images)}"
        for img in images:
            assert img["complete"] and img["natural_width"] > 0, f"image did not load: {img}"
            assert img["width"] >= 300 and img["height"] >= 120, f"image too small to see: {img}"
        assert result["title"].startswith("Weekly margin report " + WEEK), result["title"]
        assert result["height"] > 1500, "the page is suspiciously short"
        external = [r for r in result["resources"] if not r.startswith(("data:", "file:"))]
        assert not external, f"the page fetched {external}"
        # The readiness section, as the browser lays it out.
        blocks = result["readiness"]
        assert len(blocks) == 4, f"expected a readiness block per workflow, found {len(blocks)}"
        for b in blocks:
            assert b["visible"], f"readiness block not visible: {b['heading']}"
            names = [c["name"] for c in b["conditions"]]
            assert names == ["writes_gated", "runs_replayable", "cost_bounded"], names
            assert all(c["verdict"] in ("pass", "FAIL") for c in b["conditions"]), b
            assert b["measures"] >= 16, b
            ready = b["heading"].endswith(": READY") or ": READY (" in b["heading"]
            assert ready == all(c["verdict"] == "pass" for c in b["conditions"]), b
        headings = [b["heading"] for b in blocks]
        assert any("support_reply: READY" in h for h in headings), headings
        assert any("NOT READY" in h for h in headings), headings
        links = [link for b in blocks for link in b["links"]]
        assert links, "no offending run links to a timeline page"
        for link in links:
            assert os.path.exists(os.path.join(out, link["href"])), f"{link} is linked but not written"

        # The timeline page of a run that breaks writes_gated: the breach is
        # marked on the tool call that makes it.
        gated = [link["href"] for link in links if link["condition"] == "writes_gated"]
        assert gated, f"no writes_gated offender is linked: {links}"
        timeline = os.path.join(out, gated[0])
        tshot = os.path.join(out, "timeline-screenshot.png")
        run(chromium_args(chromium, profile) + [
            f"--screenshot={tshot}", "--window-size=1200,1600", "file://" + timeline])
        with open(tshot, "rb") as f:
            assert f.read().startswith(b"\x89PNG"), "the timeline screenshot is empty"
        t = probe(chromium, profile, timeline)
        assert t["title"].startswith("Run "), t["title"]
        assert t["policy"], "the page does not say which policy was in force"
        events = t["events"]
        assert len(events) >= 3, events
        assert [e["n"] for e in events] == [str(i + 1) for i in range(len(events))]
        assert [e["ts"] for e in events] == sorted(e["ts"] for e in events), "events out of order"
        running = [float(e["running"]) for e in events]
        assert running == sorted(running), "the running total goes down"
        marks = [m for e in events for m in e["marks"]]
        breach_rows = [e for e in events if e["breach"]]
        assert marks and breach_rows, f"{gated[0]}: no breach marked on an event"
        assert all(m["visible"] for m in marks), marks
        assert len(breach_rows) == len([e for e in events if e["marks"]])
        assert t["breaches"] >= len(marks), "the breaches are not listed above the events"
        external = [r for r in t["resources"] if not r.startswith(("data:", "file:"))]
        assert not external, f"the timeline page fetched {external}"

        keep = os.environ.get("AGENTLEDGER_SCREENSHOT")
        if keep:
            shutil.copy(shot, keep)
        print(f"browser check: {len(images)} charts loaded and visible; page {result['height']}px tall; "
              f"screenshot {len(png)} bytes" + (f" (copied to {keep})" if keep else "")
              + f"; {len(blocks)} readiness blocks, {len(links)} timeline links; "
              f"{gated[0]}: {len(events)} events, {len(marks)} breaches marked")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
