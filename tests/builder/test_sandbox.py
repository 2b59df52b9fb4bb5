"""Builds are hostile code: a RUN step cannot escape to the host, see or signal its processes, reach its loopback
or read Slipway's secrets; buildah never runs as root; killed builds leave nothing; base images come from this
Slipway under any of its names, with the requester's or the pull robot's rights."""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.api import Api
from tests.builder.conftest import FAST_QUEUE, Builds, tar_gz
from tests.conftest import ADMIN_PASSWORD, ContainerTools, SlipwayServer
from tests.images import make_oci_layout
from tests.triggers.test_triggers import GitServer, make_trigger

# A static program doing what an attacker's RUN step would: the classic chroot escape, then reading files,
# looking for and signalling the host's processes, and connecting to the host's loopback.
ATTACK_C = r"""
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    /* argv: port pid... -- files... */
    mkdir("/.x", 0755);
    if (chroot("/.x") != 0) printf("CHROOT-FAILED %s\n", strerror(errno));
    for (int i = 0; i < 64; i++) chdir("..");
    if (chroot(".") != 0) printf("CHROOT-FAILED %s\n", strerror(errno));
    int port = atoi(argv[1]);
    int i = 2;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        int pid = atoi(argv[i]);
        char path[64];
        snprintf(path, sizeof path, "/proc/%d", pid);
        struct stat st;
        printf(stat(path, &st) == 0 ? "SEES-PID %d\n" : "NO-PID %d\n", pid);
        if (kill(pid, 0) == 0) printf("CAN-SIGNAL %d\n", pid);
        else printf("CANNOT-SIGNAL %d %s\n", pid, strerror(errno));
    }
    for (i++; i < argc; i++) {
        FILE *f = fopen(argv[i], "r");
        if (!f) { printf("CANNOT-READ %s %s\n", argv[i], strerror(errno)); continue; }
        char buf[80] = {0};
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t k = 0; k < n; k++) if (buf[k] < 32 || buf[k] > 126) buf[k] = '.';
        printf("READ %s %s\n", argv[i], buf);
    }
    int count = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) if (e->d_name[0] >= '0' && e->d_name[0] <= '9') count++;
    if (d) closedir(d);
    printf("PROCESSES %d\n", count);
    /* the host's loopback, directly and through slirp4netns's gateway, and a private address */
    const char *hosts[] = {"127.0.0.1", "10.0.2.2", "192.168.1.1"};
    for (int h = 0; h < 3; h++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct timeval tv = {2, 0};
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        inet_pton(AF_INET, hosts[h], &a.sin_addr);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) printf("CONNECTED %s:%d\n", hosts[h], port);
        else printf("CONNECT-FAILED %s:%d %s\n", hosts[h], port, strerror(errno));
        close(s);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def attack_binary(tmp_path_factory) -> bytes:
    base = tmp_path_factory.mktemp("attack")
    (base / "attack.c").write_text(ATTACK_C)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(base / "attack"), str(base / "attack.c")], check=True,
                   capture_output=True)
    return (base / "attack").read_bytes()


def server_pids(server: SlipwayServer) -> list[int]:
    """The server's own processes: the supervisor, the HTTP processes and the background process."""
    out = subprocess.run(["pgrep", "-s", str(server.proc.pid), "-f", "slipway.cli serve"], capture_output=True,
                         text=True).stdout
    return sorted(int(p) for p in out.split())


@pytest.mark.db_agnostic  # the build sandbox: no rule of it reads the database
def test_a_run_step_cannot_escape_read_secrets_signal_or_reach_the_host(builds, attack_binary, tmp_path):
    server = builds.server
    marker = tmp_path / "root-only-marker"
    secret_text = uuid.uuid4().hex
    marker.write_text(secret_text)
    marker.chmod(0o600)
    pids = server_pids(server)
    assert len(pids) >= 3  # supervisor, HTTP process, background process
    secret_key = server.data_dir / "secret.key"
    database = server.data_dir / "slipway.db"
    files = [str(marker), str(secret_key), str(database), "/etc/shadow"]
    cmd = json.dumps(["/attack", str(server.port), *map(str, pids), "--", *files])
    repo = builds.repo("attacked")
    archive = tar_gz({"Dockerfile": "\n".join([f"FROM {builds.base}", "COPY attack /attack", f"RUN {cmd}",
                                                'RUN ["/bin/busybox", "ip", "route"]',
                                                'RUN ["/bin/busybox", "sh", "-c", "echo normal > /normal"]', ""]),
                      "attack": attack_binary}, modes={"attack": 0o755})
    build = builds.start_archive(repo, archive)
    done = builds.wait(repo, build["id"])
    log = builds.log_text(repo, build["id"])
    assert done["phase"] == "complete", log  # the normal RUN step still works
    assert "CHROOT-FAILED" in log  # CAP_SYS_CHROOT is gone: no escape
    for path in files:
        assert f"CANNOT-READ {path}" in log, log
    assert secret_text not in log and not any(line.startswith("READ ") for line in log.splitlines())
    for pid in pids:
        assert f"NO-PID {pid}" in log and f"CANNOT-SIGNAL {pid} No such process" in log, log
    processes = int(log.split("PROCESSES ")[1].split()[0])
    assert processes < 10, log  # only the build's own processes
    assert f"CONNECT-FAILED 127.0.0.1:{server.port}" in log, log
    assert f"CONNECT-FAILED 10.0.2.2:{server.port}" in log, log  # slirp4netns's way to the host loopback: off
    assert f"CONNECT-FAILED 192.168.1.1:{server.port}" in log and "blackhole 192.168.0.0/16" in log, log
    assert "CONNECTED" not in log
    assert server_pids(server) == pids  # all still running
    # buildah itself never ran as root: its storage belongs to the build user.
    storage = server.build_root
    assert storage.stat().st_uid != 0 and storage.owner() == "slipway-build"


@pytest.mark.db_agnostic  # the build sandbox: no rule of it reads the database
def test_kill_everything_from_a_run_step_leaves_slipway_running(builds):
    pids = server_pids(builds.server)
    repo = builds.repo("killer")
    build = builds.start_dockerfile(repo, f'FROM {builds.base}\nRUN ["/bin/busybox", "kill", "-9", "-1"]\n')
    done = builds.wait(repo, build["id"])
    assert done["phase"] in ("complete", "error")
    assert builds.server.v2("GET", "/v2/").status_code == 401  # still answering
    assert server_pids(builds.server) == pids
    later = builds.start_dockerfile(repo, f"FROM {builds.base}\nLABEL after=kill\n")
    assert builds.wait(repo, later["id"])["phase"] == "complete"


@pytest.mark.db_agnostic  # the build sandbox: no rule of it reads the database
def test_storage_driver_and_isolation_are_logged(builds):
    server_log = builds.server.log_text()
    assert "build workers: storage driver overlay (probed)" in server_log
    assert "build workers: isolation chroot, rootless as 'slipway-build'" in server_log
    repo = builds.repo("described")
    build = builds.start_dockerfile(repo, f"FROM {builds.base}\nLABEL x=1\n")
    builds.wait(repo, build["id"])
    first = [e["message"] for e in builds.logs(repo, build["id"])["logs"][:6]]
    assert "Build worker: storage driver overlay (probed)" in first, first
    assert any(m.startswith("Build worker: isolation chroot, rootless as 'slipway-build', own PID/mount/IPC/UTS/"
                            "network namespaces, network public") for m in first), first


@pytest.mark.db_agnostic  # the build sandbox: no rule of it reads the database
def test_build_storage_belongs_to_the_build_user_outside_the_data_directory(builds):
    root = builds.server.build_root
    assert root.owner() == "slipway-build" and root.stat().st_mode & 0o777 == 0o700
    assert builds.server.data_dir not in root.parents
    assert (builds.server.data_dir / "secret.key").stat().st_mode & 0o077 == 0


# -- base images from this Slipway ------------------------------------------------------------------------

def push_private(builds: Builds, owner: Api, owner_name: str, password: str, name: str, label: str) -> str:
    from tests.images import make_oci_layout

    layout = builds.tools.base / f"layout-{name}"
    make_oci_layout(layout, labels={"from": label})
    builds.tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"{owner_name}:{password}",
                        f"oci:{layout}:latest", f"docker://{builds.server.host}/{owner_name}/{name}:1.0")
    assert owner.get(f"/repository/{owner_name}/{name}").json()["is_public"] is False
    digest = json.loads(builds.tools.skopeo("inspect", "--tls-verify=false", "--creds", f"{owner_name}:{password}",
                                            f"docker://{builds.server.host}/{owner_name}/{name}:1.0").stdout)["Digest"]
    return digest


def test_manual_builds_pull_private_bases_the_requester_can_read_under_any_local_name(builds):
    port = builds.server.port
    digest = push_private(builds, builds.admin, "admin", ADMIN_PASSWORD, "privbase", "private-base")
    repo = builds.repo("fromlocal")
    dockerfile = "\n".join([
        f"FROM localhost:{port}/admin/privbase:1.0 AS first",
        'RUN ["/bin/busybox", "sh", "-c", "echo built > /built"]',
        f"FROM 127.0.0.1:{port}/admin/privbase@{digest}",
        "COPY --from=first /built /built",
        f"FROM localhost:{port}/admin/privbase:1.0@{digest}",
        "COPY --from=1 /built /built2", ""])
    build = builds.start_dockerfile(repo, dockerfile)
    done = builds.wait(repo, build["id"])
    assert done["phase"] == "complete", builds.log_text(repo, build["id"])
    assert builds.inspect(f"{repo}:latest")["Labels"]["from"] == "private-base"

    builds.server.create_user("mallory", "mallory-pass-1")
    mallory = Api(builds.server, ("mallory", "mallory-pass-1"))
    mallory.ok("POST", "/repository", {"repository": "stolen", "visibility": "private"})
    r = mallory.request("POST", "/repository/mallory/stolen/build/",
                        files={"file": ("Dockerfile", f"FROM localhost:{port}/admin/privbase:1.0\n".encode())})
    assert r.status_code == 201, r.text
    failed = builds.wait("mallory/stolen", r.json()["id"])
    assert failed["phase"] == "error"
    assert (f"Could not pull base image localhost:{port}/admin/privbase:1.0: repository admin/privbase does not exist "
            "or mallory (who started this build) cannot read it") in failed["error"], failed["error"]

    # The private base is in the worker's shared store now; a RUN --mount of it is a base image too,
    # so mallory's build has to pull it with her rights (and cannot), instead of reading the store.
    mount = json.dumps(["/bin/busybox", "cat", "/x/bin/busybox"])
    r = mallory.request("POST", "/repository/mallory/stolen/build/", files={"file": ("Dockerfile", (
        f"FROM {builds.base}\nRUN --mount=type=bind,from=localhost:{port}/admin/privbase:1.0,target=/x "
        f"{mount}\n").encode())})
    assert r.status_code == 201, r.text
    refused = builds.wait("mallory/stolen", r.json()["id"])
    assert refused["phase"] == "error" and "mallory (who started this build) cannot read it" in refused["error"]


@pytest.mark.db_agnostic  # the build sandbox: no rule of it reads the database
def test_a_base_the_store_holds_is_used_only_when_the_builds_credential_reads_that_very_digest(builds):
    """A build skips pulling a base image when the registry, asked with the build's own credential, names the
    digest the shared store holds under that name; a tag moved since is pulled again; and what a credential
    cannot read is never answered with a digest (the build then pulls, and the registry refuses)."""
    from builder import images

    port = builds.server.port
    push_private(builds, builds.admin, "admin", ADMIN_PASSWORD, "heldbase", "held-one")
    base = f"localhost:{port}/admin/heldbase:1.0"
    repo = builds.repo("fromheld")
    first = builds.start_dockerfile(repo, f"FROM {base}\nLABEL step=first\n")
    assert builds.wait(repo, first["id"])["phase"] == "complete", builds.log_text(repo, first["id"])
    assert f"Pulling base image {base}" in builds.log_text(repo, first["id"])

    second = builds.start_dockerfile(repo, f"FROM {base}\nLABEL step=second\n")
    assert builds.wait(repo, second["id"])["phase"] == "complete", builds.log_text(repo, second["id"])
    log = builds.log_text(repo, second["id"])
    assert f"Base image {base} is here already (sha256:" in log and "Pulling base image" not in log, log

    # The tag moves: the store's image is no longer what the registry serves, so it is pulled.
    layout = builds.tools.base / "layout-heldbase-two"
    make_oci_layout(layout, labels={"from": "held-two"})
    builds.tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{ADMIN_PASSWORD}",
                        f"oci:{layout}:latest", f"docker://{builds.server.host}/admin/heldbase:1.0")
    third = builds.start_dockerfile(repo, f"FROM {base}\nLABEL step=third\n")
    assert builds.wait(repo, third["id"])["phase"] == "complete", builds.log_text(repo, third["id"])
    assert f"Pulling base image {base}" in builds.log_text(repo, third["id"])
    assert builds.inspect(f"{repo}:latest")["Labels"]["from"] == "held-two"

    # The HEAD answers a digest only to a credential that reads the repository.
    ref = images.parse(base)
    assert images.readable_digest(builds.server.url, ref, ("admin", ADMIN_PASSWORD)).startswith("sha256:")
    builds.server.create_user("eve", "eve-pass-1")
    assert images.readable_digest(builds.server.url, ref, ("eve", "eve-pass-1")) is None
    assert images.readable_digest(builds.server.url, ref, None) is None
    assert images.readable_digest(builds.server.url, ref, ("admin", "wrong-password")) is None
    # Eve's build of the held private base is refused although the store holds it.
    eve = Api(builds.server, ("eve", "eve-pass-1"))
    eve.ok("POST", "/repository", {"repository": "held", "visibility": "private"})
    r = eve.request("POST", "/repository/eve/held/build/", files={"file": ("Dockerfile", f"FROM {base}\n".encode())})
    assert r.status_code == 201, r.text
    refused = builds.wait("eve/held", r.json()["id"])
    assert refused["phase"] == "error" and "eve (who started this build) cannot read it" in refused["error"]


@pytest.mark.db_agnostic  # the build sandbox: no rule of it reads the database
def test_a_base_image_whose_onbuild_reads_another_image_is_refused(builds):
    """ONBUILD triggers run in the build as if written in its Dockerfile; one that reads another image
    (COPY --from) would read it without this build naming (and being checked for) it."""
    port = builds.server.port
    layout = builds.tools.base / "layout-onbuild"
    make_oci_layout(layout, labels={"from": "onbuild"}, config_extra={
        "OnBuild": [f"COPY --from=localhost:{port}/admin/base:1 /bin/busybox /copied"]})
    builds.tools.skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", "--dest-creds",
                        f"admin:{ADMIN_PASSWORD}", f"oci:{layout}:latest",
                        f"docker://{builds.server.host}/admin/onbuildbase:1")
    repo = builds.repo("fromonbuild")
    build = builds.start_dockerfile(repo, f"FROM localhost:{port}/admin/onbuildbase:1\nLABEL x=y\n")
    done = builds.wait(repo, build["id"])
    assert done["phase"] == "error", builds.log_text(repo, build["id"])
    assert "has ONBUILD instructions that read other images" in done["error"], done["error"]


@pytest.mark.db_agnostic  # the build sandbox: no rule of it reads the database
def test_base_images_at_private_addresses_are_refused_before_any_pull(builds):
    repo = builds.repo("privatefrom")
    build = builds.start_dockerfile(repo, "FROM 10.255.255.1:5000/internal/image:1\n")
    done = builds.wait(repo, build["id"], timeout=60)
    assert done["phase"] == "error"
    assert "Could not pull base image 10.255.255.1:5000/internal/image:1" in done["error"]
    assert "non-public address (10.255.255.1)" in done["error"], done["error"]


def test_triggered_builds_of_private_bases_need_the_pull_robot(env_triggers):
    builds, base = env_triggers
    port = builds.server.port
    push_private(builds, builds.admin, "admin", ADMIN_PASSWORD, "trigbase", "trigger-base")
    repo = builds.repo("triggered")
    git = GitServer(base / "git-private-base")
    git.commit({"Dockerfile": f"FROM localhost:{port}/admin/trigbase:1.0\nLABEL via=trigger\n"}, "Use a private base")
    git.git("push", "-q", "origin", "main")
    trigger = make_trigger(builds, repo, build_source=f"file://{git.origin}")
    first = builds.admin.ok("POST", f"/repository/{repo}/trigger/{trigger['id']}/start", {"branch_name": "main"})
    failed = builds.wait(repo, first["id"])
    assert failed["phase"] == "error"
    assert "pull_robot" in failed["error"] and f"/trigger/{trigger['id']}" in failed["error"], failed["error"]

    builds.admin.ok("PUT", "/user/robots/puller", {"description": "pulls bases"})
    builds.admin.ok("PUT", "/repository/admin/trigbase/permissions/user/admin+puller", {"role": "read"})
    builds.admin.ok("PUT", f"/repository/{repo}/trigger/{trigger['id']}", {"pull_robot": "admin+puller"})
    second = builds.admin.ok("POST", f"/repository/{repo}/trigger/{trigger['id']}/start", {"branch_name": "main"})
    done = builds.wait(repo, second["id"])
    assert done["phase"] == "complete", builds.log_text(repo, second["id"])
    assert builds.inspect(f"{repo}:main")["Labels"]["from"] == "trigger-base"


@pytest.fixture(scope="module")
def env_triggers(tmp_path_factory):
    base = tmp_path_factory.mktemp("sandbox-triggers")
    srv = SlipwayServer(base / "srv", extra_env={**FAST_QUEUE, "SLIPWAY_TRIGGERS__ALLOW_FILE_URLS": "true"}).start()
    builds = Builds(srv, ContainerTools(base / "tools", srv.host)).setup(base)
    yield builds, base
    srv.stop()


def buildah_containers(server: SlipwayServer) -> list[str]:
    root = server.build_root / "overlay"
    out = subprocess.run(["setpriv", "--reuid=slipway-build", "--regid=slipway-build", "--clear-groups", "--",
                          "env", f"XDG_RUNTIME_DIR={server.build_root / 'xdg'}", "HOME=/var/lib/slipway-build",
                          "buildah", "--root", str(root / "storage"), "--runroot", str(root / "run"),
                          "--storage-driver", "overlay", "containers", "--quiet", "--all"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_killed_build_leaves_nothing_after_the_next_worker_start(tmp_path):
    # The default build storage (in the build user's home), with a data directory private to root.
    srv = SlipwayServer(tmp_path / "srv", extra_env={**FAST_QUEUE, "SLIPWAY_BUILDS__STORAGE_ROOT": ""})
    srv.data_dir.chmod(0o700)
    digest = hashlib.sha256(str(srv.data_dir.resolve()).encode()).hexdigest()[:12]
    srv.build_root = Path("/var/lib/slipway-build") / f"slipway-{digest}"
    srv.start()
    try:
        builds = Builds(srv, ContainerTools(tmp_path / "tools", srv.host)).setup(tmp_path)
        repo = builds.repo("crash")
        build = builds.start_dockerfile(repo, f'FROM {builds.base}\nRUN ["/bin/busybox", "sleep", "600"]\n')
        deadline = time.time() + 120
        while "STEP 2/2" not in builds.log_text(repo, build["id"]):
            assert time.time() < deadline, builds.log_text(repo, build["id"])
            time.sleep(0.2)
        work = srv.build_root / "work"
        left_dirs, left_containers = list(work.glob("build-*")), buildah_containers(srv)
        assert left_dirs and left_containers
        srv.stop(signal.SIGKILL)  # the whole server, its workers and buildah with it
        assert all(d.exists() for d in left_dirs)  # what a crash leaves
        srv.start()
        deadline = time.time() + 60
        while "working containers and" not in srv.log_text():
            assert time.time() < deadline, srv.log_text()
            time.sleep(0.1)
        assert not any(d.exists() for d in left_dirs)
        assert not set(left_containers) & set(buildah_containers(srv))
        builds.admin.request("DELETE", f"/repository/{repo}/build/{build['id']}")  # the retry, if it started
        builds.wait(repo, build["id"])
        builds.wait_worker_idle()
        deadline = time.time() + 30
        while buildah_containers(srv):  # removed once the worker is idle again
            assert time.time() < deadline, buildah_containers(srv)
            time.sleep(0.2)
    finally:
        srv.stop()
        subprocess.run(["rm", "-rf", str(srv.build_root)])


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    base = tmp_path_factory.mktemp("limited")
    srv = SlipwayServer(base / "srv", extra_env={
        **FAST_QUEUE, "SLIPWAY_BUILDS__MAX_PROCESSES": "40", "SLIPWAY_BUILDS__MAX_MEMORY_MB": "300",
        "SLIPWAY_BUILDS__MAX_CPU_SECONDS": "4", "SLIPWAY_BUILDS__LAYER_CACHE": "false"}).start()
    builds = Builds(srv, ContainerTools(base / "tools", srv.host)).setup(base)
    yield builds
    srv.stop()


@pytest.mark.db_agnostic  # the build sandbox: no rule of it reads the database
@pytest.mark.parametrize("run, message", [
    ('for i in $(seq 1 200); do sleep 30 & done; wait', "reached its limit of 40 processes (builds.max_processes)"),
    ("head -c 900000000 /dev/zero | sort > /dev/null", "ran out of memory: it may use 300 MiB (builds.max_memory_mb)"),
    ("while :; do :; done", "more than its 4 s of CPU time (builds.max_cpu_seconds)"),
], ids=["processes", "memory", "cpu"])
def test_build_limits_stop_the_build_with_a_clear_error(limited, run, message):
    repo = limited.repo("limits")
    script = json.dumps(["/bin/busybox", "sh", "-c", f"export PATH=/bin; {run}"])
    build = limited.start_dockerfile(repo, f'FROM {limited.base}\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
                                           f"RUN {script}\n")
    done = limited.wait(repo, build["id"], timeout=120)
    assert done["phase"] == "error" and message in done["error"], (done["error"], limited.log_text(repo, build["id"]))
    later = limited.start_dockerfile(repo, f"FROM {limited.base}\nLABEL fine=yes\n")
    assert limited.wait(repo, later["id"])["phase"] == "complete"  # the next build is not affected


@pytest.mark.db_agnostic  # builds on a server that speaks TLS: transport and trust, not the database
def test_builds_work_on_a_server_that_speaks_tls(tmp_path):
    # The README's TLS setup: the worker reaches the registry over HTTPS, the relay inside the sandbox
    # speaks plain HTTP to buildah (the realm the registry names is rewritten to match).
    srv = SlipwayServer(tmp_path / "srv", extra_env=FAST_QUEUE, tls=True).start()
    try:
        builds = Builds(srv, ContainerTools(tmp_path / "tools", srv.host)).setup(tmp_path)
        repo = builds.repo("tls")
        content = f'FROM {builds.base}\nRUN ["/bin/busybox", "sh", "-c", "echo over-tls > /tls"]\n'
        first = builds.wait(repo, builds.start_dockerfile(repo, content)["id"], timeout=120)
        assert first["phase"] == "complete", builds.log_text(repo, first["id"])
        builds.wait_worker_idle()  # the layer cache is published
        again = builds.wait(repo, builds.start_dockerfile(repo, content)["id"], timeout=120)
        assert again["phase"] == "complete" and "Using cache" in builds.log_text(repo, again["id"])
        assert "layer cache published" in srv.log_text()
    finally:
        srv.stop()
