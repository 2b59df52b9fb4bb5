"""The build queue's overview in-process (the superuser's status page shows it)."""
from __future__ import annotations

from builder import queue
from builder.models import Build, BuildJob
from registry import repos


def test_the_build_queue_overview_counts_waiting_builds_and_names_running_ones_workers(db, admin):
    repo = repos.create_repository("admin", "app", admin)
    assert queue.overview() == {"waiting": 0, "running": []}
    for n in range(3):
        build = Build.create(uuid=f"00000000-0000-0000-0000-00000000000{n}", repository=repo)
        BuildJob.create(build=build, repository_id=repo.id, namespace_id=repo.namespace_id)
    claimed = queue.claim("worker-1", 30, 2)
    overview = queue.overview()
    assert overview["waiting"] == 2
    assert [(r["build"].uuid, r["worker"]) for r in overview["running"]] == [(claimed.uuid, "worker-1")]
