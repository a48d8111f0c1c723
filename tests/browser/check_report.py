#!/usr/bin/env python3
"""Opens the weekly report in headless Chromium and checks that it renders.

Usage: check_report.py AGENTLEDGER CHROMIUM

Builds a lake from sample-data/, writes the report of 2026-W43, then:
  1. takes a screenshot of report.html (kept as report-screenshot.png in the
     report folder, for a person to look at);
  2. loads a copy of the page with a small script appended that reports, for
     every <img>, whether it loaded (complete, natural size > 0) and its
     rendered size, and checks each one is visible;
  3. checks the page made no network request: it is self-contained.
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
  var pre = document.createElement('pre');
  pre.id = 'probe-result';
  pre.textContent = 'PROBE' + JSON.stringify({images: out, title: document.title,
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


def main():
    agentledger, chromium = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="agentledger-browser-")
    try:
        lake = os.path.join(work, "lake")
        out = os.path.join(work, "report")
        sample = os.path.join(ROOT, "sample-data")
        run([agentledger, "--lake", lake, "load", "prices", os.path.join(sample, "model_prices.csv")])
        run([agentledger, "--lake", lake, "load", "plans", os.path.join(sample, "customer_plans.csv")])
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

        probe_page = os.path.join(out, "probe.html")
        with open(page, encoding="utf-8") as f:
            html = f.read()
        with open(probe_page, "w", encoding="utf-8") as f:
            f.write(html.replace("</body>", PROBE + "</body>"))
        dom = run(chromium_args(chromium, profile) + [
            "--virtual-time-budget=5000", "--window-size=1200,900", "--dump-dom", "file://" + probe_page])
        found = re.search(r'<pre id="probe-result">PROBE(.*?)EBORP</pre>', dom, re.S)
        assert found, "the probe did not run:\n" + dom[-2000:]
        result = json.loads(html_lib.unescape(found.group(1)))
        images = result["images"]
        assert len(images) == 4, f"expected 4 charts, found {len(images)}"
        for img in images:
            assert img["complete"] and img["natural_width"] > 0, f"image did not load: {img}"
            assert img["width"] >= 300 and img["height"] >= 120, f"image too small to see: {img}"
        assert result["title"].startswith("Weekly margin report " + WEEK), result["title"]
        assert result["height"] > 1500, "the page is suspiciously short"
        external = [r for r in result["resources"] if not r.startswith(("data:", "file:"))]
        assert not external, f"the page fetched {external}"
        keep = os.environ.get("AGENTLEDGER_SCREENSHOT")
        if keep:
            shutil.copy(shot, keep)
        print(f"browser check: {len(images)} charts loaded and visible; page {result['height']}px tall; "
              f"screenshot {len(png)} bytes" + (f" (copied to {keep})" if keep else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
