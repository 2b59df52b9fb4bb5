#!/usr/bin/env python3
"""On-demand benchmark (issue 15): how long a build's log line takes to reach an open build page.

    .venv/bin/python bench/ui_build_log_bench.py --builds 3 --json /tmp/ui-log-bench.json

Starts Slipway (SQLite, filesystem storage, the build worker in ``slipway serve``) in a fresh temporary
directory with a busybox base image pushed into it (bench/build_bench.py's setup), signs a headless Debian
chromium in (Selenium, as tests/ui), and for each build: queues the ticking build of build_bench.py (a RUN
printing ``tick <i> <wall-clock time>`` every ~100 ms, 100 lines), opens its build page, and records with a
MutationObserver the wall-clock time each ``tick`` line element is added to the page's log. The latency of a
line is ``added to the page - printed by the build``: the whole path (buildah's output, the worker's log
writer and its 50 ms batches, the database, the SSE endpoint's 100 ms poll, the browser's EventSource,
build_log.js's per-frame rendering). Lines printed before the observer was in place are left out (they
were rendered from the backlog, not live). Every run also checks that the page holds every tick exactly once.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench import (  # noqa: E402
    PASSWORD,
    TERMINAL,
    TICKS,
    Context,
    Slipway,
    machine_note,
    push_base,
    stats_ms,
    tick_dockerfile,
)
from registry_bench import BenchError, free_port, slipway_commit  # noqa: E402

OBSERVER = """
window.__ticks = [];
window.__since = performance.timeOrigin + performance.now();
new MutationObserver((records) => {
  const at = performance.timeOrigin + performance.now();
  for (const record of records) for (const node of record.addedNodes) {
    const lines = node.nodeType === 1 ? (node.matches('.line') ? [node] : node.querySelectorAll('.line')) : [];
    for (const line of lines) if (line.textContent.startsWith('tick ')) window.__ticks.push([line.textContent, at]);
  }
}).observe(document.getElementById('build-log'), {childList: true, subtree: true});
"""


def sign_in(driver, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/signin")
    form = driver.find_element(By.CSS_SELECTOR, "form[action='/signin']")
    form.find_element(By.NAME, "username").send_keys("admin")
    form.find_element(By.NAME, "password").send_keys(PASSWORD)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    deadline = time.monotonic() + 20
    while not driver.get_cookie("slipway_session"):
        if time.monotonic() > deadline:
            raise BenchError("the browser did not sign in")
        time.sleep(0.05)


def one_build(slipway: Slipway, driver, repo: str, ctx: Context) -> dict:
    _, files = ctx.make()
    build = slipway.api("POST", f"/repository/{repo}/build/", expect=(201,),
                        files={"file": ("Dockerfile", files["Dockerfile"], "text/plain")}, data={"docker_tags": "t"})
    driver.get(f"{slipway.url}/repository/{repo}/build/{build['id']}")
    driver.execute_script(OBSERVER)
    deadline = time.monotonic() + 600
    while True:
        phase = slipway.api("GET", f"/repository/{repo}/build/{build['id']}")["phase"]
        if phase in TERMINAL and driver.execute_script("return window.slipwayBuildLog.state.ended"):
            break
        if time.monotonic() > deadline:
            raise BenchError(f"build {build['id']} still {phase} after 600 s")
        time.sleep(0.5)
    if phase != "complete":
        raise BenchError(f"build {build['id']} ended {phase}")
    since = driver.execute_script("return window.__since") / 1000
    seen = driver.execute_script("return window.__ticks")
    held = [e["message"] for e in driver.execute_script("return window.slipwayBuildLog.state.entries")
            if e["message"].startswith("tick ")]
    numbers = sorted(int(m.split()[1]) for m in held)
    if numbers != list(range(TICKS)):
        raise BenchError(f"the page holds ticks {numbers[:5]}... ({len(numbers)}), not 0..{TICKS - 1} once each")
    latencies, backlog = [], 0
    for text, added_ms in seen:
        printed = float(text.split()[2])
        if printed < since:
            backlog += 1
            continue
        latencies.append(added_ms / 1000 - printed)
    return {"build_id": build["id"], "live_lines": len(latencies), "backlog_lines": backlog, "latencies": latencies}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=3, help="ticking builds followed by the page (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", help="save the figures to this file")
    args = parser.parse_args()
    from tests.ui.conftest import new_driver

    workdir = Path(tempfile.mkdtemp(prefix="slipway-ui-log-bench-", dir=os.environ.get("BENCH_TMP")))
    slipway = Slipway(workdir, free_port())
    report: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine_note(), "slipway_rev": slipway_commit(), "builds": args.builds,
                    "ticks_per_build": TICKS}
    driver = None
    try:
        slipway.start(separate_worker=False)
        base = push_base(slipway, workdir)
        slipway.api("POST", "/repository", json={"repository": "ticks", "visibility": "private"}, expect=(200, 201))
        ctx = Context(tick_dockerfile(base), with_files=False)
        driver = new_driver()
        sign_in(driver, slipway.url)
        runs, latencies = [], []
        for n in range(args.builds):
            run = one_build(slipway, driver, "admin/ticks", ctx)
            latencies += run.pop("latencies")
            runs.append(run)
            print(f"build {n + 1}/{args.builds}: {run}", flush=True)
        report["runs"] = runs
        report["page"] = {"lines": len(latencies), **stats_ms(latencies)}
        print(json.dumps(report["page"]), flush=True)
        errors = slipway.log_errors()
        if errors:
            report["server_log_errors"] = errors[:20]
    finally:
        if driver is not None:
            driver.quit()
        slipway.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    target = report["page"]["p95_ms"] <= 250
    print(f"p95 {report['page']['p95_ms']} ms: {'within' if target else 'OVER'} the 250 ms target")
    return 0 if target else 1


if __name__ == "__main__":
    sys.exit(main())
