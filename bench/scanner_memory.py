#!/usr/bin/env python3
"""Peak RSS of a real server's background process while it scans a large layer (issue 14: under 200 MB for a
1 GB layer).

Starts ``slipway serve`` (one HTTP process and the background process) on a fresh data directory under the given
folder, imports the Debian tracker, pushes with skopeo an image of the Debian fixture's layer and a 2.5 GiB
(inflated) layer of zeros (``tests/scanner/test_restart.py``'s image), waits until the scan is done, and prints
the background process's ``VmRSS`` / ``VmHWM`` (peak) from ``/proc/<pid>/status`` before and after.

    /work/main/.venv/bin/python bench/scanner_memory.py /tmp/scanner-memory
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.api import Api  # noqa: E402
from tests.conftest import ADMIN_PASSWORD, ContainerTools, SlipwayServer, wait_for  # noqa: E402
from tests.scanner.test_restart import CREDS, TRACKER, layout_with, security  # noqa: E402


def niced_children(pid: int) -> list[int]:
    """The children of ``pid`` running niced: the background process (the HTTP processes are not)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and int(fields[16]) > 0:
            found.append(int(entry.name))
    return found


def memory(pid: int) -> str:
    lines = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return (f"VmRSS {int(lines['VmRSS'].split()[0]) // 1024} MiB, "
            f"VmHWM (peak) {int(lines['VmHWM'].split()[0]) // 1024} MiB")


def main() -> None:
    base = Path(sys.argv[1])
    server = SlipwayServer(base / "srv", extra_env={"SLIPWAY_SCANNER__MAX_INFLATED_MB_PER_LAYER": "8192"}).start()
    try:
        tools = ContainerTools(base / "tools", server.host)
        api = Api(server, auth=("admin", ADMIN_PASSWORD))
        server.cli("scanner", "update", str(TRACKER))
        [background] = niced_children(server.proc.pid)
        print(f"background process {background} before: {memory(background)}")
        digest = layout_with(base / "layout", True, "big")
        api.ok("POST", "/repository", {"repository": "big", "visibility": "private", "namespace": "admin"})
        tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{base / 'layout'}:latest",
                     f"docker://{server.host}/admin/big:1")
        start = time.monotonic()
        body = wait_for(lambda: (lambda b: b if b["status"] != "queued" else None)(security(api, "admin/big", digest)),
                        timeout=600, what="the scan")
        print(f"{body['status']} {time.monotonic() - start:.1f} s after the push; after: {memory(background)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
