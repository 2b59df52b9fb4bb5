"""The Builds tab and the build page in a real browser: a build started by uploading a Dockerfile streams
its log into the page while it runs; a stream cut mid-build resumes without losing or doubling a line; a
finished 50,000-line log loads without freezing the page and keeps the page's DOM bounded."""
from __future__ import annotations

import time

import pytest

from tests.builder.conftest import FAST_QUEUE, Builds
from tests.conftest import ContainerTools, SlipwayServer, wait_for

LINES = 30


def counting(base: str, lines: int, pause: str = "0.1") -> str:
    """A Dockerfile whose RUN prints ``line-1`` .. ``line-<lines>``, one every ``pause`` seconds."""
    script = (f"i=1; while [ $i -le {lines} ]; do echo line-$i; i=$((i+1)); /bin/busybox sleep {pause}; done")
    return f'FROM {base}\nRUN ["/bin/busybox", "sh", "-c", "{script}"]\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server that builds (one worker, fast retries): the browser fixtures use it for this module."""
    srv = SlipwayServer(tmp_path_factory.mktemp("ui-builds"), extra_env={
        **FAST_QUEUE, "SLIPWAY_BUILDS__WORKERS": "1"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def builds(server, tmp_path_factory):
    base = tmp_path_factory.mktemp("ui-build-tools")
    return Builds(server, ContainerTools(base, server.host)).setup(base)


def log_lines(page) -> list[str]:
    """The text of every line element of the page's log, in order."""
    return page.driver.execute_script(
        "return Array.from(document.querySelectorAll('#build-log .line')).map(e => e.textContent)")


def numbered(lines: list[str]) -> list[int]:
    return [int(text[len("line-"):]) for text in lines if text.startswith("line-")]


def phase(page) -> str:
    return page.text("#build-phase")


def test_a_build_started_from_the_page_streams_its_log_and_turns_complete(page, builds, tmp_path, screenshot):
    repo = builds.repo("uibuild")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(counting(builds.base, LINES))
    page.sign_in().open(f"/repository/{repo}?tab=builds")
    assert "No builds yet" in page.text("main")
    page.find("#f-file").send_keys(str(dockerfile))
    page.submit("#start-build form", docker_tags="latest, ui", build_args="GREETING=hello")
    assert "/build/" in page.path and "queued" in page.text(".flashes")
    # lines reach the page while the build is still running
    wait_for(lambda: numbered(log_lines(page)), 120, "a line of the RUN in the page", interval=0.05)
    assert phase(page) == "building", "the first lines were shown before the build ended"
    assert numbered(log_lines(page))[-1] < LINES
    assert page.find("#cancel-build").is_displayed()
    screenshot(page, "build")
    page.wait_text("#build-phase", "complete", timeout=120)
    wait_for(lambda: "The build is over" in page.text("#log-status"), 10, "the end of the stream")
    assert numbered(log_lines(page)) == list(range(1, LINES + 1))
    assert not page.find("#cancel-build").is_displayed(), "a finished build cannot be cancelled"
    assert not page.find("#build-log .show-earlier").is_displayed(), "every line is shown"
    # the step is collapsible, and the history lists the build with its tags and phase
    step = page.find("#build-log details.step")
    assert step.get_attribute("open") is not None
    page.find("#log-collapse").click()
    assert step.get_attribute("open") is None
    page.open(f"/repository/{repo}?tab=builds")
    row = page.text("#builds tbody tr")
    assert "complete" in row and "latest" in row and "ui" in row and "by admin" in row
    # a finished build shows the same log, read without a stream
    page.find("#builds tbody a").click()
    wait_for(lambda: numbered(log_lines(page)) == list(range(1, LINES + 1)), 10, "the finished log")
    assert page.driver.execute_script("return window.slipwayBuildLog.state.connects") == 0


def test_a_stream_cut_mid_build_resumes_without_losing_or_doubling_a_line(page, builds):
    repo = builds.repo("uiresume")
    build = builds.start_dockerfile(repo, counting(builds.base, 60, "0.05"))
    page.sign_in().open(f"/repository/{repo}/build/{build['id']}")
    cuts = 0
    for at in (5, 25):
        wait_for(lambda at=at: len(numbered(log_lines(page))) >= at, 120, f"{at} lines", interval=0.05)
        if phase(page) != "building":
            break
        connects = page.driver.execute_script("return window.slipwayBuildLog.state.connects")
        page.driver.execute_script("window.slipwayBuildLog.state.source.close()")
        cuts += 1
        wait_for(lambda c=connects: page.driver.execute_script("return window.slipwayBuildLog.state.connects") > c,
                 5, "the page to open a new stream", interval=0.05)
    assert cuts >= 1, "the stream was cut while the build ran"
    page.wait_text("#build-phase", "complete", timeout=120)
    wait_for(lambda: "The build is over" in page.text("#log-status"), 10, "the end of the stream")
    assert numbered(log_lines(page)) == list(range(1, 61))
    shown = page.driver.execute_script("return window.slipwayBuildLog.state.entries.map(e => e.message)")
    assert shown == [e["message"] for e in builds.logs(repo, build["id"])["logs"]]


def test_a_running_build_is_cancelled_from_its_page(page, builds):
    repo = builds.repo("uicancel")
    build = builds.start_dockerfile(repo, counting(builds.base, 600, "0.1"))
    page.sign_in().open(f"/repository/{repo}/build/{build['id']}")
    wait_for(lambda: numbered(log_lines(page)), 120, "the build running", interval=0.05)
    page.driver.execute_script("window.confirm = () => true")
    page.find("#cancel-build button").click()
    page.wait_text(".flashes", "cancelled")
    page.wait_text("#build-phase", "cancelled", timeout=60)
    assert builds.wait(repo, build["id"])["phase"] == "cancelled"


def test_a_finished_log_of_50000_lines_loads_without_freezing_the_page(page, builds, server):
    repo = builds.repo("uibig")
    build = builds.start_dockerfile(repo, "FROM scratch\nNOT_AN_INSTRUCTION\n")
    builds.wait(repo, build["id"])
    build_id = server.sql("SELECT id FROM build WHERE uuid = ?", build["id"])[0][0]
    start = server.sql("SELECT COUNT(*) FROM build_log WHERE build_id = ?", build_id)[0][0]
    now = int(time.time() * 1000)
    server.sql("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 49999) "
               "INSERT INTO build_log (build_id, seq, type, message, created_at) "
               "SELECT ?, ? + i, '', 'big-' || i, ? FROM n", build_id, start, now)
    total = start + 50000
    # long tasks (main thread busy > 50 ms) are recorded from the first script on
    script = page.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__long = []; new PerformanceObserver(l => l.getEntries().forEach(e => window.__long.push(e.duration)))"
        ".observe({type: 'longtask', buffered: true});")})
    try:
        page.sign_in()
        began = time.monotonic()
        page.open(f"/repository/{repo}/build/{build['id']}")
        wait_for(lambda: page.driver.execute_script("return window.slipwayBuildLog.state.rendered") == total, 20,
                 "the whole log", interval=0.05)
        loaded = time.monotonic() - began
        lines = log_lines(page)
        assert lines[-1] == "big-49999" and len(lines) <= 2100, len(lines)
        longest = max(page.driver.execute_script("return window.__long") or [0])
        assert longest < 500, f"the page's main thread was blocked for {longest:.0f} ms"
        assert loaded < 10, loaded
        # following the end: at the bottom; scrolling up stops it, ticking it again goes back down
        at_bottom = ("const b = document.getElementById('build-log'); "
                     "return b.scrollHeight - b.scrollTop - b.clientHeight < 8")
        assert page.find("#log-follow").is_selected() and page.driver.execute_script(at_bottom)
        page.driver.execute_script("document.getElementById('build-log').scrollTop = 0")
        wait_for(lambda: not page.find("#log-follow").is_selected(), 5, "following to stop", interval=0.05)
        page.find("#log-follow").click()
        assert page.driver.execute_script(at_bottom)
        # earlier lines on demand
        page.find("#build-log .show-earlier").click()
        lines = log_lines(page)
        assert len(lines) > 3000 and lines[-1] == "big-49999"
    finally:
        page.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", script)
