"""builder.contexts: real archives made in tmp_path, hostile ones included, and a real HTTP server for download()."""
from __future__ import annotations

import dataclasses
import io
import os
import stat
import tarfile
import threading
import types
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from builder import contexts
from builder.contexts import ContextError, Limits, detect_kind, download, materialize, select_context

DOCKERFILE = b"FROM scratch\nCOPY run.sh /\n"


# --- archive builders ----------------------------------------------------------------------------------------

def tar_file(name, data=b"", mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), mode
    return ti, io.BytesIO(data)


def tar_link(name, target, hard=False):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
    return ti, None


def tar_special(name, type_):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    return ti, None


def make_tar(path: Path, members, mode="w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for ti, data in members:
            tf.addfile(ti, data)
    return path


def zip_entry(name, data=b"", mode=stat.S_IFREG | 0o644):
    zi = zipfile.ZipInfo(name)
    zi.external_attr = mode << 16
    zi.compress_type = zipfile.ZIP_DEFLATED
    return zi, data


def make_zip(path: Path, entries) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for zi, data in entries:
            zf.writestr(zi, data)
    return path


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "dest"
    d.mkdir()
    return d


# --- good sources --------------------------------------------------------------------------------------------

def test_tar_gz_with_subdirectory_and_executable_script(tmp_path, dest):
    source = make_tar(tmp_path / "upload.bin", [
        tar_file("app/Dockerfile", DOCKERFILE),
        tar_file("app/run.sh", b"#!/bin/sh\necho hi\n", mode=0o6755),   # setuid+setgid must be dropped
        tar_file("shared/lib.txt", b"lib"),
        tar_link("app/lib", "../shared"),                                # a link that stays inside is fine
    ])
    assert materialize(source, dest) == "tar.gz"
    assert (dest / "app/Dockerfile").read_bytes() == DOCKERFILE
    assert stat.S_IMODE((dest / "app/run.sh").stat().st_mode) == 0o755
    assert (dest / "app/run.sh").stat().st_uid == os.getuid()
    assert os.readlink(dest / "app/lib") == "../shared"
    assert (dest / "app/lib/lib.txt").read_bytes() == b"lib"
    ctx, dockerfile = select_context(dest, "app")
    assert (ctx, dockerfile) == (dest.resolve() / "app", dest.resolve() / "app/Dockerfile")


def test_plain_tar_with_dot_slash_names_and_hardlink(tmp_path, dest):
    source = make_tar(tmp_path / "ctx.tgz", [tar_special("./", tarfile.DIRTYPE),
                                              tar_file("./Dockerfile", DOCKERFILE),
                                              tar_link("./copy", "./Dockerfile", hard=True)], mode="w")
    assert materialize(source, dest) == "tar"
    assert sorted(p.name for p in dest.iterdir()) == ["Dockerfile", "copy"]
    assert (dest / "copy").read_bytes() == DOCKERFILE


def test_zip_keeps_modes_and_inner_symlinks(tmp_path, dest):
    source = make_zip(tmp_path / "ctx.zip", [
        zip_entry("Dockerfile", DOCKERFILE),
        zip_entry("bin/", mode=stat.S_IFDIR | 0o755),
        zip_entry("bin/build.sh", b"#!/bin/sh\n", mode=stat.S_IFREG | 0o4755),
        zip_entry("bin/link", b"build.sh", mode=stat.S_IFLNK | 0o777),
    ])
    assert materialize(source, dest) == "zip"
    assert stat.S_IMODE((dest / "bin/build.sh").stat().st_mode) == 0o755
    assert os.readlink(dest / "bin/link") == "build.sh"
    assert select_context(dest)[1] == dest.resolve() / "Dockerfile"


def test_plain_dockerfile_detected_by_content_not_name(tmp_path, dest):
    source = tmp_path / "context.tar.gz"        # misleading name
    source.write_bytes(DOCKERFILE)
    assert detect_kind(source) == "dockerfile"
    assert materialize(source, dest) == "dockerfile"
    assert [p.name for p in dest.iterdir()] == ["Dockerfile"]
    assert (dest / "Dockerfile").read_bytes() == DOCKERFILE


def test_detect_kind(tmp_path):
    assert detect_kind(make_tar(tmp_path / "a", [tar_file("Dockerfile", DOCKERFILE)], mode="w")) == "tar"
    assert detect_kind(make_tar(tmp_path / "b", [tar_file("Dockerfile", DOCKERFILE)])) == "tar.gz"
    assert detect_kind(make_zip(tmp_path / "c", [zip_entry("Dockerfile", DOCKERFILE)])) == "zip"


def test_binary_that_is_no_archive_is_refused(tmp_path, dest):
    source = tmp_path / "x.bz2"
    source.write_bytes(b"BZh91AY&SY\x00\x01\x02" * 10)
    with pytest.raises(ContextError, match="neither a Dockerfile nor"):
        materialize(source, dest)
    assert list(dest.iterdir()) == []


# --- hostile archives ----------------------------------------------------------------------------------------

def good():
    """Listed first in hostile archives: proves nothing is written before validation (or it is removed)."""
    return tar_file("Dockerfile", DOCKERFILE)



@pytest.mark.parametrize("members, message", [
    ([tar_file("../x", b"x")], "'../x' points outside the build context"),
    ([tar_file("a/../../x", b"x")], "'a/../../x' points outside the build context"),
    ([tar_file("/etc/x", b"x")], "'/etc/x' has an absolute path"),
    ([tar_link("etc", "/etc")], "'etc' is a symbolic link to '/etc', outside"),
    ([tar_link("sub/up", "../../x")], "'sub/up' is a symbolic link to '../../x', outside"),
    # 'd/l' -> '..' is the root itself (allowed), but 'esc' -> 'd/l/..' then climbs above it
    ([tar_link("d/l", ".."), tar_link("esc", "d/l/..")], "'esc' is a symbolic link to 'd/l/..', outside"),
    ([tar_link("loop1", "loop2"), tar_link("loop2", "loop1")], "'loop1' is a symbolic link"),
    ([tar_link("h", "../outside", hard=True)], "'h' is a hard link to '../outside', outside"),
    ([tar_link("h", "/etc/passwd", hard=True)], "'h' is a hard link to '/etc/passwd', outside"),
    ([tar_link("h", "etc/passwd", hard=True)], "'h' is a hard link to 'etc/passwd', which is not a file"),
    ([tar_link("a", "/etc"), tar_file("a/passwd", b"root::0:0")], "'a' is a symbolic link to '/etc'"),
    ([tar_link("a", "sub"), tar_file("a/passwd", b"x")], "'a/passwd' is inside the symbolic link 'a'"),
    ([tar_file("f", b"x"), tar_file("f/g", b"x")], "'f/g' is inside the file 'f'"),
    ([tar_file("x", b"1"), tar_file("x", b"2")], "'x' appears more than once"),
    ([tar_special("dev/sda", tarfile.BLKTYPE)], "'dev/sda' is a device file"),
    ([tar_special("null", tarfile.CHRTYPE)], "'null' is a device file"),
    ([tar_special("pipe", tarfile.FIFOTYPE)], "'pipe' is a FIFO"),
])
def test_hostile_tar_is_refused_before_extraction(tmp_path, dest, members, message):
    source = make_tar(tmp_path / "evil.tar.gz", [good(), *members])
    with pytest.raises(ContextError, match=message.replace("(", r"\(").replace(".", r"\.")):
        materialize(source, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("entry, message", [
    (zip_entry("../evil", b"x"), "'../evil' points outside"),
    (zip_entry("/etc/cron.d/x", b"x"), "'/etc/cron.d/x' has an absolute path"),
    (zip_entry("etc", b"/etc", mode=stat.S_IFLNK | 0o777), "'etc' is a symbolic link to '/etc', outside"),
    (zip_entry("up", b"../../x", mode=stat.S_IFLNK | 0o777), "'up' is a symbolic link to '../../x', outside"),
    (zip_entry("pipe", b"", mode=stat.S_IFIFO | 0o644), "'pipe' is a special file"),
])
def test_hostile_zip_is_refused(tmp_path, dest, entry, message):
    source = make_zip(tmp_path / "evil.zip", [zip_entry("Dockerfile", DOCKERFILE), entry])
    with pytest.raises(ContextError, match=message.replace(".", r"\.")):
        materialize(source, dest)
    assert list(dest.iterdir()) == []


def test_too_many_members(tmp_path, dest):
    source = make_tar(tmp_path / "many.tar.gz", [tar_file(f"f{i}", b"x") for i in range(10)])
    with pytest.raises(ContextError, match="more than the limit of 5 members"):
        materialize(source, dest, Limits(max_files=5))
    assert list(dest.iterdir()) == []
    assert materialize(source, dest, Limits(max_files=10)) == "tar.gz"


def test_gzip_bomb_hits_the_size_limit(tmp_path, dest):
    zeros = bytes(50 * 1024 * 1024)
    source = make_tar(tmp_path / "bomb.tar.gz", [good(), tar_file("zeros", zeros)])
    assert source.stat().st_size < 1024 * 1024         # really a bomb: 50 MB in well under 1 MB
    with pytest.raises(ContextError, match="build context is larger than the limit of 1048576 bytes"):
        materialize(source, dest, Limits(max_bytes=1024 * 1024))
    assert list(dest.iterdir()) == []


def test_hardlinks_count_towards_the_size_limit(tmp_path, dest, monkeypatch):
    """Each hard link is extracted as a copy, so it is refused from the declared sizes, before extraction."""
    monkeypatch.setattr(contexts, "_extract", lambda *a: pytest.fail("extraction started"))
    members = [tar_file("data", bytes(600))] + [tar_link(f"h{i}", "data", hard=True) for i in range(3)]
    source = make_tar(tmp_path / "links.tar.gz", members)
    with pytest.raises(ContextError, match="larger than the limit of 2000 bytes"):
        materialize(source, dest, Limits(max_bytes=2000))
    assert list(dest.iterdir()) == []


def test_bytes_written_are_counted_even_when_declared_sizes_lie(tmp_path, dest, monkeypatch):
    """Simulate headers declaring size 0: the byte counter during extraction must still stop the bomb."""
    real_collect = contexts._collect
    monkeypatch.setattr(contexts, "_collect", lambda members, limits: real_collect(
        (dataclasses.replace(m, size=0) for m in members), limits))
    source = make_tar(tmp_path / "liar.tar.gz", [good(), tar_file("zeros", bytes(3 * 1024 * 1024))])
    with pytest.raises(ContextError, match="larger than the limit of 1048576 bytes"):
        materialize(source, dest, Limits(max_bytes=1024 * 1024))
    assert list(dest.iterdir()) == []     # the Dockerfile written before the bomb was removed


def test_zip_bomb_hits_the_size_limit(tmp_path, dest):
    source = make_zip(tmp_path / "bomb.zip", [zip_entry("Dockerfile", DOCKERFILE),
                                               zip_entry("zeros", bytes(50 * 1024 * 1024))])
    assert source.stat().st_size < 1024 * 1024
    with pytest.raises(ContextError, match="larger than the limit of 1048576 bytes"):
        materialize(source, dest, Limits(max_bytes=1024 * 1024))
    assert list(dest.iterdir()) == []


def test_zip_lying_about_its_size_is_refused(tmp_path, dest):
    source = make_zip(tmp_path / "liar.zip", [zip_entry("Dockerfile", DOCKERFILE),
                                               zip_entry("zeros", bytes(2 * 1024 * 1024))])
    data = bytearray(source.read_bytes())
    central = data.rfind(b"PK\x01\x02")                   # central directory entry of "zeros"
    data[central + 24:central + 28] = (1000).to_bytes(4, "little")   # uncompressed size: 2 MB -> 1000
    source.write_bytes(data)
    with pytest.raises(ContextError, match="not a valid zip archive: Bad CRC-32"):
        materialize(source, dest, Limits(max_bytes=1024 * 1024))
    assert list(dest.iterdir()) == []


def test_truncated_tar_gz(tmp_path, dest):
    source = make_tar(tmp_path / "t.tar.gz", [good(), tar_file("random", os.urandom(200_000))])
    source.write_bytes(source.read_bytes()[:100_000])
    with pytest.raises(ContextError, match="not a valid tar.gz archive: "):
        materialize(source, dest)
    assert list(dest.iterdir()) == []


def test_truncated_plain_tar_is_cleaned_up(tmp_path, dest):
    """Truncated data is only noticed while extracting: what was already written must go."""
    source = make_tar(tmp_path / "t.tar", [good(), tar_file("random", os.urandom(100_000))], mode="w")
    source.write_bytes(source.read_bytes()[:3 * 512 + 50_000])
    with pytest.raises(ContextError, match="not a valid tar archive: unexpected end of data"):
        materialize(source, dest)
    assert list(dest.iterdir()) == []


def test_corrupt_zip(tmp_path, dest):
    source = tmp_path / "bad.zip"
    source.write_bytes(b"PK\x03\x04" + os.urandom(1000))
    with pytest.raises(ContextError, match="not a valid zip archive: "):
        materialize(source, dest)
    assert list(dest.iterdir()) == []


# --- select_context ------------------------------------------------------------------------------------------

@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "app").mkdir(parents=True)
    (r / "app/Dockerfile").write_bytes(DOCKERFILE)
    (r / "Dockerfile").write_bytes(DOCKERFILE)
    return r.resolve()


@pytest.mark.parametrize("context, dockerfile_path", [
    ("app", "Dockerfile"), ("/app", "Dockerfile"), ("/app", "/app/Dockerfile"), ("app/", "./Dockerfile"),
])
def test_select_subdirectory(root, context, dockerfile_path):
    assert select_context(root, context, dockerfile_path) == (root / "app", root / "app/Dockerfile")


@pytest.mark.parametrize("context, dockerfile_path", [("", "Dockerfile"), ("/", "/Dockerfile"), (None, None)])
def test_select_root(root, context, dockerfile_path):
    assert select_context(root, context, dockerfile_path) == (root, root / "Dockerfile")


@pytest.mark.parametrize("context, dockerfile_path, message", [
    ("../x", "Dockerfile", "build context '../x' may not contain '..'"),
    ("app/../../x", "Dockerfile", "may not contain '..'"),
    ("app", "../Dockerfile", "Dockerfile path '../Dockerfile' may not contain '..'"),
    ("missing", "Dockerfile", "build context directory 'missing' not found"),
    ("app", "/Dockerfile", "Dockerfile '/Dockerfile' is outside the build context 'app'"),
    ("app", "other/Dockerfile", "Dockerfile not found at other/Dockerfile in the build context"),
])
def test_select_refusals(root, context, dockerfile_path, message):
    with pytest.raises(ContextError, match=message.replace(".", r"\.")):
        select_context(root, context, dockerfile_path)


def test_select_symlinked_context_pointing_out(root, tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/Dockerfile").write_bytes(DOCKERFILE)
    (root / "out").symlink_to(tmp_path / "outside")
    with pytest.raises(ContextError, match="build context 'out' leads outside"):
        select_context(root, "out")


def test_select_symlinked_dockerfile_pointing_out(root, tmp_path):
    (tmp_path / "secret").write_bytes(b"FROM scratch\n")
    (root / "app/Dockerfile").unlink()
    (root / "app/Dockerfile").symlink_to(tmp_path / "secret")
    with pytest.raises(ContextError, match="outside the build context 'app'"):
        select_context(root, "app")


def test_select_dockerfile_only_at_root_is_outside_subdirectory_context(root):
    (root / "app/Dockerfile").unlink()
    with pytest.raises(ContextError, match="Dockerfile 'Dockerfile' is outside the build context 'app'"):
        select_context(root, "app")
    assert select_context(root, "/") == (root, root / "Dockerfile")


def test_select_ambiguous_dockerfile(root):
    (root / "app/app").mkdir()
    (root / "app/app/Dockerfile").write_bytes(DOCKERFILE)
    with pytest.raises(ContextError, match="ambiguous"):
        select_context(root, "app", "app/Dockerfile")


# --- download ------------------------------------------------------------------------------------------------

ARCHIVE = b"\x1f\x8b" + os.urandom(3000)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ctx.tar.gz":
            self._answer(200, ARCHIVE)
        elif self.path == "/stream":        # no Content-Length: only counting can stop it
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(ARCHIVE)
            self.close_connection = True
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ctx.tar.gz")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._answer(404, b"no")

    def _answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_base():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


ALLOWED = types.SimpleNamespace(allow_private=False, allowlist=["127.0.0.1/32"])


def test_download_refuses_private_address_by_default(http_base, tmp_path):
    target = tmp_path / "a.bin"
    with pytest.raises(ContextError, match=r"non-public address \(127\.0\.0\.1\)"):
        download(f"{http_base}/ctx.tar.gz", target, types.SimpleNamespace(allow_private=False, allowlist=[]),
                 10_000)
    assert not target.exists()


@pytest.mark.parametrize("path", ["/ctx.tar.gz", "/stream"])
def test_download_allowed_by_allowlist(http_base, tmp_path, path):
    target = tmp_path / "a.bin"
    assert download(http_base + path, target, ALLOWED, 10_000) == target
    assert target.read_bytes() == ARCHIVE


@pytest.mark.parametrize("path, message", [
    ("/ctx.tar.gz", r"larger than the limit of 1000 bytes \(3002 bytes\)"),   # refused from Content-Length
    ("/stream", "larger than the limit of 1000 bytes"),                     # refused while counting
])
def test_download_too_large(http_base, tmp_path, path, message):
    target = tmp_path / "a.bin"
    with pytest.raises(ContextError, match=message):
        download(http_base + path, target, ALLOWED, 1000)
    assert not target.exists()


def test_download_404(http_base, tmp_path):
    with pytest.raises(ContextError, match="failed: HTTP 404"):
        download(f"{http_base}/nothing", tmp_path / "a.bin", ALLOWED, 10_000)
    assert not (tmp_path / "a.bin").exists()


def test_download_redirect_is_not_followed(http_base, tmp_path):
    with pytest.raises(ContextError, match="redirect .*HTTP 302 to /ctx.tar.gz.*not followed"):
        download(f"{http_base}/redirect", tmp_path / "a.bin", ALLOWED, 10_000)
    assert not (tmp_path / "a.bin").exists()
