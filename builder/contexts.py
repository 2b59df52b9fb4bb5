"""Turning what a user uploaded (a Dockerfile, a .tar/.tar.gz/.zip archive or an archive_url) into a build context.

Archives come from users, so they are hostile until checked. Every member is examined *before* anything is
written: no absolute paths, no ``..``, no links leading out of the context, no devices/FIFOs, no member
below a symlink, no more than ``Limits`` allow. Extraction then writes only what was approved, counting
the bytes really written (compressed data can lie about its size). Any failure leaves ``dest`` empty.
Python 3.11.2's tarfile has no extraction ``filter=``, so the checks are done here by hand.
"""
from __future__ import annotations

import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import requests

from slipway import outgoing, redact
from slipway.errors import Invalid

CHUNK = 1024 * 1024
MAX_LINK_HOPS = 40          # like the kernel's ELOOP limit
DOWNLOAD_SECONDS = 600      # a slow server must not hold a worker forever
# What a broken or truncated archive raises while being read.
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError,
            NotImplementedError)


class ContextError(Exception):
    """A problem with the user's build context; str(e) is shown to the user in the build log and error_message."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 512 * 1024 * 1024      # total uncompressed size of the context
    max_files: int = 100_000                # members in an archive


@dataclass
class _Member:
    """One archive member in a format-neutral form, with its path already normalized."""
    name: str
    kind: str                 # "file" | "dir" | "symlink" | "hardlink"
    size: int = 0
    mode: int = 0o644
    target: str = ""          # symlink: as written; hardlink: normalized path of the linked member
    mtime: float | None = None
    source: object = None     # the TarInfo / ZipInfo to read the data from


def _too_large(limits: Limits) -> ContextError:
    return ContextError(f"build context is larger than the limit of {limits.max_bytes} bytes")


def detect_kind(path: Path) -> str:
    """"dockerfile", "tar", "tar.gz" or "zip", from the first bytes: users' file names are not reliable."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):      # a local file header, or an empty zip
        return "zip"
    if len(head) == 512:
        try:        # a tar header carries a checksum; text never passes it
            tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
            return "tar"
        except tarfile.HeaderError:
            pass
    return "dockerfile"


def materialize(source: Path, dest: Path, limits: Limits = Limits()) -> str:
    """Unpack `source` (archive) into the empty directory `dest`, or, if it is a plain Dockerfile, write it as
    dest/"Dockerfile". Returns the detected kind."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} must be empty")
    kind = detect_kind(source)
    try:
        if kind == "dockerfile":
            _copy_dockerfile(source, dest / "Dockerfile", limits)
        elif kind == "zip":
            with zipfile.ZipFile(source) as zf:
                members = _validate(_collect(_zip_members(zf), limits), limits)
                _extract(members, dest, lambda m: zf.open(m.source), limits)
        else:
            # A .tar.gz is decompressed once, to a plain tar beside it: tarfile reads the archive twice (the
            # checks, then the extraction), and on a gzip stream every pass decompresses it again.
            plain = _gunzip(source, limits) if kind == "tar.gz" else source
            try:
                with tarfile.open(plain, "r:") as tf:
                    members = _validate(_collect(_tar_members(tf), limits), limits)
                    _extract(members, dest, lambda m: tf.extractfile(m.source), limits)
            finally:
                if plain != source:
                    plain.unlink(missing_ok=True)
    except _CORRUPT as e:
        _clear(dest)
        raise ContextError(f"not a valid {kind} archive: {e}") from None
    except BaseException:
        _clear(dest)
        raise
    return kind


def _gunzip(source: Path, limits: Limits) -> Path:
    """``source`` (gzip) decompressed into a new file beside it, refused past what a tar of at most
    ``limits`` can be (its members' bytes, and a few headers per member): a gzip bomb stops here."""
    cap = limits.max_bytes + (limits.max_files + 1) * 4096
    fd, name = tempfile.mkstemp(dir=source.parent, prefix=".context-", suffix=".tar")
    target, written, started = Path(name), 0, False
    try:
        with open(source, "rb") as compressed, os.fdopen(fd, "wb") as out:
            stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while chunk := compressed.read(CHUNK):
                while chunk:
                    started = True
                    data = stream.decompress(chunk, CHUNK)
                    written += len(data)
                    if written > cap:
                        raise _too_large(limits)
                    out.write(data)
                    chunk = stream.unconsumed_tail
                    if stream.eof:  # a member ends; another may follow (gzip allows several), else the rest is padding
                        rest = stream.unused_data + chunk
                        stream, started = zlib.decompressobj(16 + zlib.MAX_WBITS), False
                        chunk = rest if rest[:2] == b"\x1f\x8b" else b""
            if started and not stream.eof:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _copy_dockerfile(source: Path, target: Path, limits: Limits) -> None:
    if source.stat().st_size > limits.max_bytes:
        raise _too_large(limits)
    data = source.read_bytes()
    if not data.strip():
        raise ContextError("the uploaded Dockerfile is empty")
    if b"\0" in data:       # binary: probably an archive format we do not read (bzip2, xz, 7z...)
        raise ContextError("the uploaded file is neither a Dockerfile nor a .tar, .tar.gz or .zip archive")
    target.write_bytes(data)


def _normalize(raw: str) -> str:
    """The member's path relative to the context root, or ContextError if it is absolute or climbs out."""
    if raw.startswith("/"):
        raise ContextError(f"archive member '{raw}' has an absolute path")
    name = posixpath.normpath(raw)
    if name == ".." or name.startswith("../"):
        raise ContextError(f"archive member '{raw}' points outside the build context (..)")
    return name


def _tar_members(tf: tarfile.TarFile):
    """Yield a _Member per tar member, refusing devices, FIFOs and other special members."""
    for ti in tf:   # iterating (not getmembers()) lets _collect stop early on huge archives
        name = _normalize(ti.name)
        common = dict(size=ti.size, mode=ti.mode, mtime=ti.mtime, source=ti)
        if ti.isreg():
            yield _Member(name, "file", **common)
        elif ti.isdir():
            yield _Member(name, "dir", **common)
        elif ti.issym():
            yield _Member(name, "symlink", target=ti.linkname, **common)
        elif ti.islnk():    # a hard link's target is a path from the archive's root
            try:
                target = _normalize(ti.linkname)
            except ContextError:
                raise ContextError(f"archive member '{ti.name}' is a hard link to '{ti.linkname}', "
                                   "outside the build context") from None
            yield _Member(name, "hardlink", target=target, **{**common, "size": 0})
        else:
            what = "device file" if ti.ischr() or ti.isblk() else "FIFO" if ti.isfifo() else "special member"
            raise ContextError(f"archive member '{ti.name}' is a {what}, which a build context may not contain")


def _zip_members(zf: zipfile.ZipFile):
    """Yield a _Member per zip entry; unix modes in external_attr say which entries are symlinks."""
    for zi in zf.infolist():
        name = _normalize(zi.filename)
        if zi.flag_bits & 0x1:
            raise ContextError(f"archive member '{zi.filename}' is encrypted")
        unix_mode = zi.external_attr >> 16
        kind = stat.S_IFMT(unix_mode)
        mtime = time.mktime(zi.date_time + (0, 0, -1))
        if zi.is_dir() or kind == stat.S_IFDIR:
            yield _Member(name, "dir", mode=stat.S_IMODE(unix_mode) or 0o755, mtime=mtime)
        elif kind == stat.S_IFLNK:
            if zi.file_size > 4096:
                raise ContextError(f"archive member '{zi.filename}' is a symbolic link with a too long target")
            yield _Member(name, "symlink", target=zf.read(zi).decode("utf-8", "surrogateescape"), mtime=mtime)
        elif kind in (0, stat.S_IFREG):
            yield _Member(name, "file", size=zi.file_size, mode=stat.S_IMODE(unix_mode) or 0o644,
                          mtime=mtime, source=zi)
        else:
            raise ContextError(f"archive member '{zi.filename}' is a special file, which a build context "
                               "may not contain")


def _collect(members, limits: Limits) -> list[_Member]:
    """Read the member list, stopping as soon as the count or the declared size is over the limits."""
    collected, total = [], 0
    for m in members:
        collected.append(m)
        total += m.size
        if len(collected) > limits.max_files:
            raise ContextError(f"archive has more than the limit of {limits.max_files} members")
        if total > limits.max_bytes:
            raise _too_large(limits)
    return collected


def _validate(members: list[_Member], limits: Limits) -> list[_Member]:
    """Check the members against each other: duplicates, members below symlinks or files, links leading out."""
    by_name: dict[str, _Member] = {}
    for m in members:
        previous = by_name.get(m.name)
        if previous and not (previous.kind == m.kind == "dir"):
            raise ContextError(f"archive member '{m.name}' appears more than once")
        if m.name == "." and m.kind != "dir":
            raise ContextError("archive member '.' must be a directory")
        if m.kind == "hardlink":
            linked = by_name.get(m.target)
            if linked is None or linked.kind != "file":
                raise ContextError(f"archive member '{m.name}' is a hard link to '{m.target}', "
                                   "which is not a file earlier in the archive")
            m.size = linked.size    # extracted as a copy, so it counts
        by_name[m.name] = m
    symlinks = {m.name: m.target for m in members if m.kind == "symlink"}
    total = 0
    for m in by_name.values():
        _check_parents(m.name, by_name)
        if m.kind == "symlink" and (not m.target or not _stays_inside(posixpath.dirname(m.name), m.target,
                                                                      symlinks)):
            raise ContextError(f"archive member '{m.name}' is a symbolic link to '{m.target}', "
                               "outside the build context")
        total += m.size
    if total > limits.max_bytes:
        raise _too_large(limits)
    return [m for m in by_name.values() if m.name != "."]


def _check_parents(name: str, by_name: dict[str, _Member]) -> None:
    """Refuse 'a/passwd' when 'a' is a symlink (it would be written through the link) or a file."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        parent = by_name.get("/".join(parts[:i]))
        if parent and parent.kind != "dir":
            what = "symbolic link" if parent.kind == "symlink" else "file"
            raise ContextError(f"archive member '{name}' is inside the {what} '{parent.name}'")


def _stays_inside(start: str, target: str, symlinks: dict[str, str]) -> bool:
    """Whether `target`, relative to the directory `start`, stays in the root when the archive's own
    symlinks are followed the way the kernel would ('l/..' is not lexically cancelled when l is a link)."""
    if target.startswith("/"):
        return False
    current = [p for p in start.split("/") if p not in ("", ".")]
    todo, hops = target.split("/"), 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not current:
                return False
            current.pop()
            continue
        current.append(part)
        link = symlinks.get("/".join(current))
        if link is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or link.startswith("/"):
                return False
            current.pop()
            todo = link.split("/") + todo
    return True


def _extract(members: list[_Member], dest: Path, open_data, limits: Limits) -> None:
    """Write approved members. Modes keep rwx bits only (no setuid/setgid/sticky); owner is the current user."""
    written = 0
    for m in members:
        path = dest / m.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if m.kind == "dir":
            path.mkdir(exist_ok=True)
            os.chmod(path, stat.S_IMODE(m.mode) & 0o777 | 0o700)   # we must be able to fill and clean it
        elif m.kind == "symlink":
            os.symlink(m.target, path)
        else:
            with (open(dest / m.target, "rb") if m.kind == "hardlink" else open_data(m)) as src:
                written = _write_file(src, path, m.mode, written, limits)
        if m.mtime is not None and m.kind != "symlink":
            os.utime(path, (m.mtime, m.mtime))


def _write_file(src, path: Path, mode: int, written: int, limits: Limits) -> int:
    """Copy `src` to the new file `path`, counting the bytes really written against the limit."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > limits.max_bytes:
                raise _too_large(limits)
            out.write(chunk)
        os.fchmod(out.fileno(), mode & 0o777)
    return written


def _clear(dest: Path) -> None:
    """Remove everything in `dest` (never following symlinks), leaving it empty."""
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def select_context(root: Path, context: str = "", dockerfile_path: str = "Dockerfile") -> tuple[Path, Path]:
    """The build context directory (the subdirectory `context` of root; "" or "/" means root) and the Dockerfile
    inside it, as resolved paths. A leading "/" means "from the root of the upload" (Quay's form): dockerfile_path
    is read relative to the context, or to the root when it starts with "/"; the other reading is used only
    when the first finds no file, and two different files inside the context are refused as ambiguous."""
    context, dockerfile_path, root = context or "", dockerfile_path or "Dockerfile", root.resolve()
    ctx = (root / _relative(context, "build context")).resolve()
    if not ctx.is_relative_to(root):
        raise ContextError(f"build context '{context}' leads outside the uploaded files (symbolic link)")
    if not ctx.is_dir():
        raise ContextError(f"build context directory '{context}' not found in the uploaded files")
    rel = _relative(dockerfile_path, "Dockerfile path")
    readings = (root / rel, ctx / rel) if dockerfile_path.strip().startswith("/") else (ctx / rel, root / rel)
    found = [p.resolve() for p in readings if p.is_file()]
    if not found:
        raise ContextError(f"Dockerfile not found at {dockerfile_path} in the build context")
    if len(found) == 2 and found[0] != found[1] and all(p.is_relative_to(ctx) for p in found):
        raise ContextError(f"Dockerfile path '{dockerfile_path}' is ambiguous: both "
                           f"/{found[0].relative_to(root)} and /{found[1].relative_to(root)} exist")
    if not found[0].is_relative_to(ctx):
        raise ContextError(f"Dockerfile '{dockerfile_path}' is outside the build context '{context or '/'}'; "
                           "only the context is visible to the build")
    return ctx, found[0]


def _relative(path: str, what: str) -> str:
    """`path` with leading slashes (meaning the upload's root) removed; '..' is refused outright."""
    rel = path.strip().lstrip("/")
    if ".." in rel.split("/"):
        raise ContextError(f"{what} '{path}' may not contain '..'")
    return rel or "."


def download(url: str, dest: Path, network, max_bytes: int) -> Path:
    """Fetch archive_url to the file dest with slipway.outgoing's private-address rule, streaming and refusing
    more than max_bytes, a non-2xx answer or a redirect. Errors -> ContextError with the reason; no partial file.
    Messages show the URL without its credentials (they end up in the build's log and error)."""
    shown = redact.url(url)
    try:
        with outgoing.get(url, network, stream=True) as response:
            _check_response(shown, response, max_bytes)
            deadline, size = time.monotonic() + DOWNLOAD_SECONDS, 0
            with open(dest, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ContextError(f"archive at {shown} is larger than the limit of {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise ContextError(f"downloading {shown} took longer than {DOWNLOAD_SECONDS} seconds")
                    out.write(chunk)
    except Invalid as e:
        raise ContextError(e.message) from None
    except requests.RequestException as e:
        dest.unlink(missing_ok=True)
        raise ContextError(f"could not download {shown}: {redact.text(str(e), url)}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


def _check_response(url: str, response: requests.Response, max_bytes: int) -> None:
    if response.is_redirect or 300 <= response.status_code < 400:
        raise ContextError(f"{url} answered with a redirect (HTTP {response.status_code} to "
                           f"{redact.url(response.headers.get('Location', '?'))}); redirects are not followed, "
                           "give the final URL of the archive")
    if not 200 <= response.status_code < 300:
        raise ContextError(f"downloading {url} failed: HTTP {response.status_code} {response.reason}")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise ContextError(f"archive at {url} is larger than the limit of {max_bytes} bytes ({length} bytes)")
