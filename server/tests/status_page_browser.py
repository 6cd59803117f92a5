"""Drives the status page of a running `wirepool serve` in headless Chromium (Playwright).

Usage: status_page_browser.py URL OUTDIR

The test that starts it owns the database. They talk over stdin/stdout, a line each:

1. the page shows HEALTHY with points on its charts: healthy.png, prints `healthy`;
2. reads `stopped` (the database is down): waits for RECOVERING with the reconnection
   schedule shown: recovering.png, prints `recovering`;
3. reads `started`: waits for HEALTHY again, prints `healthy again`;
4. sorts the statement table by a click, then prints one JSON line: every URL the page
   requested, the ones from another origin, the states and tiers it showed, the number
   of chart points. Exits non-zero on a timeout or an error on the page.

Chromium is Debian's (`CHROMIUM`, default /usr/bin/chromium), started without its
background services, so the only requests are the page's own.
"""

import json
import os
import sys
import time
from urllib.parse import urlsplit

from playwright.sync_api import sync_playwright

URL, OUT = sys.argv[1], sys.argv[2]
os.makedirs(OUT, exist_ok=True)
origin = "{0.scheme}://{0.netloc}".format(urlsplit(URL))


def say(line):
    print(line, flush=True)


def expect(line):
    got = sys.stdin.readline().strip()
    if got != line:
        raise SystemExit(f"expected {line!r} from the test, got {got!r}")


with sync_playwright() as pw:
    browser = pw.chromium.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
        ],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    requests, page_errors, states, tiers = [], [], [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and page_errors.append(m.text))

    def shown():
        s = page.get_attribute("#state", "data-state")
        t = page.get_attribute("#status", "data-status")
        if s and (not states or states[-1] != s):
            states.append(s)
        if t and (not tiers or tiers[-1] != t):
            tiers.append(t)
        return s, t

    def wait_until(what, cond, limit):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if cond():
                return
            page.wait_for_timeout(200)
        raise SystemExit(f"timed out waiting for {what}; states {states}, tiers {tiers}, errors {page_errors}")

    def points(chart):
        return int(page.get_attribute(f"#chart-{chart}", "data-points") or 0)

    page.goto(URL)
    wait_until(
        "HEALTHY with chart points",
        lambda: shown() == ("HEALTHY", "healthy") and points("connections") >= 2,
        60,
    )
    page.screenshot(path=os.path.join(OUT, "healthy.png"), full_page=True)
    say("healthy")

    expect("stopped")
    wait_until(
        "RECOVERING with the reconnection schedule",
        lambda: shown()[0] == "RECOVERING" and page.is_visible("#reconnect")
        and "Attempt" in page.inner_text("#reconnect-text"),
        90,
    )
    # The last error names the lost connection; give the table its row before the shot.
    wait_until("an error listed", lambda: page.locator("#errors tbody td:not(.empty)").count() > 0, 30)
    page.screenshot(path=os.path.join(OUT, "recovering.png"), full_page=True)
    reconnect_text = page.inner_text("#reconnect-text")
    say("recovering")

    expect("started")
    wait_until("HEALTHY again", lambda: shown()[0] == "HEALTHY" and not page.is_visible("#reconnect"), 120)
    say("healthy again")

    # The table sorts by a click on a header.
    page.click("th[data-key=calls]")
    sorted_by = page.get_attribute("th[data-key=calls]", "class")
    report = {
        "requests": len(requests),
        "foreign": [u for u in requests if not (u.startswith(origin + "/") or u.startswith("data:"))],
        "states": states,
        "tiers": tiers,
        "points": {c: points(c) for c in ["connections", "pipelined", "acquire", "statement"]},
        "statements": page.locator("#statements tbody tr").count(),
        "sorted_by_calls": sorted_by,
        "reconnect_text": reconnect_text,
        "errors_listed": page.locator("#errors tbody tr").count(),
        "page_errors": page_errors,
    }
    browser.close()
    say(json.dumps(report))
