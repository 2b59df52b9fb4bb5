"""Indexing: what a layer holds (packages, os-release, deletions) and what an image holds once its layers are
combined in order. Pure: reads a layer from a stream, never whole in memory, and touches no database."""
from __future__ import annotations

import email.parser
import io
import json
import posixpath
import shlex
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import BinaryIO

import zstandard
from debian.debian_support import Version as DebianVersion
from isal import igzip, isal_zlib

# Bump when what index_layer finds changes: stored layer indexes of another version are re-indexed lazily.
INDEXER_VERSION = "1"


class LayerUnreadable(Exception):
    """A layer the indexer cannot read; ``str(error)`` is a reason fit for the user (not a tar, truncated,
    a decompression bomb, a symlink loop, a package database that does not parse)."""


@dataclass
class Limits:
    max_inflated_bytes_per_layer: int = 4 << 30
    # cap on any one file read for its content: dpkg status files, METADATA, apk installed db, ELF build info
    max_file_bytes: int = 64 << 20


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    kind: str  # "dpkg" | "apk" | "python" | "go" (a Go binary's main module and its deps) | "go-stdlib"
    source: str | None = None  # dpkg's Source: name (None when it is the binary's own name); apk's origin
    source_version: str | None = None  # dpkg's Source: (version), else None
    added_by: str = ""  # the digest of the layer that added it (filled by combine)
    path: str = ""  # where it was found (the db file, the dist-info directory, the binary)


@dataclass
class LayerIndex:
    packages: list[Package] = field(default_factory=list)
    os_release: dict | None = None  # the parsed os-release, if the layer has one
    whiteouts: list[str] = field(default_factory=list)  # paths this layer deletes (from .wh.<name>)
    opaque_dirs: list[str] = field(default_factory=list)  # directories whose lower content this layer hides
    paths: set[str] = field(default_factory=set)  # the package-relevant paths this layer holds

    def to_json(self) -> str:
        return json.dumps({
            "indexer": INDEXER_VERSION,
            "packages": [asdict(p) for p in self.packages],
            "os_release": self.os_release,
            "whiteouts": self.whiteouts,
            "opaque_dirs": self.opaque_dirs,
            "paths": sorted(self.paths),
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str | bytes) -> LayerIndex:
        data = json.loads(s)
        return cls(
            packages=[Package(**p) for p in data["packages"]],
            os_release=data.get("os_release"),
            whiteouts=list(data.get("whiteouts", [])),
            opaque_dirs=list(data.get("opaque_dirs", [])),
            paths=set(data.get("paths", [])),
        )


@dataclass(frozen=True)
class Distribution:
    id: str  # os-release ID: "debian", "alpine", ...
    version_id: str
    codename: str | None = None  # Debian's VERSION_CODENAME ("bookworm")
    branch: str | None = None  # Alpine's branch from VERSION_ID ("3.4.6" -> "v3.4")
    pretty_name: str | None = None


@dataclass
class ImageIndex:
    distribution: Distribution | None
    packages: list[Package]  # with added_by

    @property
    def supported(self) -> bool:
        """False for what has no package database at all (FROM scratch, an artifact): Quay's "unsupported"."""
        return bool(self.packages) or self.distribution is not None


# ---------------------------------------------------------------------------------------------------------------
# Reading a layer

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 256 << 10  # read buffers; 1 MiB ones, mapped afresh by the allocator per layer, cost ~1.5 ms a layer
SYMLINK_HOPS = 40  # as the kernel's MAXSYMLINKS

OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")
DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
APK_INSTALLED = "lib/apk/db/installed"

# Go's build info blob (runtime/debug.BuildInfo as the linker embeds it): a 16-byte aligned header with this
# magic, the pointer size, flags (bit 2: the version and module strings follow inline, Go 1.18 and later),
# then two varint-prefixed strings. The module string is framed by 16 bytes on each side.
GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"
GO_INLINE_STRINGS = 0x2
GO_MODINFO_FRAME = 16


class _Capped(io.RawIOBase):
    """A decompressed stream that refuses to inflate more than ``limit`` bytes (a decompression bomb) and turns
    the decompressors' errors into LayerUnreadable."""

    def __init__(self, raw: BinaryIO, limit: int):
        self._raw = raw
        self._left = limit
        self._limit = limit

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self._raw.close()  # the gzip reader's thread stops with it
        super().close()

    def readinto(self, buffer) -> int:
        try:
            data = self._raw.read(min(len(buffer), self._left + 1))
        except (EOFError, zlib.error, isal_zlib.error, zstandard.ZstdError, OSError, ValueError) as error:
            raise LayerUnreadable(f"the layer is truncated or its compression is corrupt ({error})") from None
        if len(data) > self._left:
            raise LayerUnreadable(f"the layer inflates to more than {self._limit} bytes (a decompression bomb?)")
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


class _Raw(io.RawIOBase):
    """Any object with ``read(n)`` (a storage driver's stream, an HTTP body) as a raw stream to buffer."""

    def __init__(self, stream):
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _decompressed(stream: BinaryIO, limits: Limits) -> BinaryIO:
    """The tar inside ``stream``, whatever the media type claims: gzip and zstd are recognized by their magic."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(_Raw(stream), CHUNK)
    head = buffered.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        # ISA-L's inflate, about twice zlib's speed. Not igzip_threaded: the background process died once of
        # SIGSEGV while a scan ran beside a build (CI, 77e668e); its reader thread is the one new threaded C
        # code there, so it is not used until that is understood.
        raw: BinaryIO = igzip.IGzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
    elif head.startswith(ZSTD_MAGIC):
        raw = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)  # type: ignore
    else:
        raw = buffered
    return io.BufferedReader(_Capped(raw, limits.max_inflated_bytes_per_layer), CHUNK)


def _normal(name: str) -> str:
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path == "." else path


def _read_capped(fileobj, limit: int, what: str) -> bytes:
    data = fileobj.read(limit + 1)
    if len(data) > limit:
        raise LayerUnreadable(f"{what} is larger than {limit} bytes")
    return data


def _python_metadata_path(path: str) -> bool:
    parts = path.split("/")
    if len(parts) < 2 or not any(p in ("site-packages", "dist-packages") for p in parts[:-1]):
        return False
    if parts[-1] == "METADATA" and parts[-2].endswith(".dist-info"):
        return True
    if parts[-1] == "PKG-INFO" and parts[-2].endswith(".egg-info"):
        return True
    return parts[-1].endswith(".egg-info")  # a single-file egg-info is the PKG-INFO itself


def index_layer(stream: BinaryIO, media_type: str, limits: Limits) -> LayerIndex:
    """What one layer holds, read from its (gzip, zstd or plain) tar stream in one pass."""
    index = LayerIndex()
    os_release_files: dict[str, bytes] = {}
    links: dict[str, str] = {}  # symbolic links (target as written) and hard links ("=" + target path)
    with _decompressed(stream, limits) as tar_stream:
        _read_tar(tar_stream, index, os_release_files, links, limits)
    index.os_release = _os_release(os_release_files, links)
    return index


def _read_tar(tar_stream: BinaryIO, index: LayerIndex, os_release_files: dict, links: dict, limits: Limits) -> None:
    try:
        archive = tarfile.open(fileobj=tar_stream, mode="r|")
    except tarfile.ReadError as error:
        raise LayerUnreadable(f"the layer is not a tar archive ({error})") from None
    try:
        for member in archive:
            _index_member(archive, member, index, os_release_files, links, limits)
    except tarfile.ReadError as error:
        if "unexpected end of data" in str(error):
            raise LayerUnreadable("the layer is truncated (unexpected end of data)") from None
        raise LayerUnreadable(f"the layer is not a valid tar archive ({error})") from None
    except (EOFError, tarfile.StreamError) as error:
        raise LayerUnreadable(f"the layer is truncated ({error or 'unexpected end of data'})") from None
    except tarfile.TarError as error:
        raise LayerUnreadable(f"the layer is not a valid tar archive ({error})") from None


def _index_member(archive, member, index, os_release_files, links, limits) -> None:
    path = _normal(member.name)
    if not path:
        return
    base = posixpath.basename(path)
    if base.startswith(".wh."):
        parent = posixpath.dirname(path)
        if base == ".wh..wh..opq":
            index.opaque_dirs.append(parent)
        elif not base.startswith(".wh..wh."):  # other .wh..wh. names are aufs' own bookkeeping
            index.whiteouts.append(posixpath.join(parent, base[len(".wh."):]))
        return
    if member.issym():
        links[path] = member.linkname
        if path in OS_RELEASE_PATHS:
            index.paths.add(path)
        return
    if member.islnk():
        links[path] = "=" + _normal(member.linkname)
        if path in OS_RELEASE_PATHS:
            index.paths.add(path)
        return
    if not member.isfile():
        return
    if base == "os-release":
        handle = archive.extractfile(member)
        os_release_files[path] = _read_capped(handle, limits.max_file_bytes, path)
        if path in OS_RELEASE_PATHS:
            index.paths.add(path)
        return
    found: list[Package] | None = None
    if path == DPKG_STATUS or (path.startswith(DPKG_STATUS_D) and "/" not in path[len(DPKG_STATUS_D):]
                               and not base.endswith(".md5sums")):
        text = _text(_read_capped(archive.extractfile(member), limits.max_file_bytes, path), path)
        found = parse_dpkg_status(text, path)
    elif path == APK_INSTALLED:
        text = _text(_read_capped(archive.extractfile(member), limits.max_file_bytes, path), path)
        found = parse_apk_installed(text, path)
    elif _python_metadata_path(path):
        text = _text(_read_capped(archive.extractfile(member), limits.max_file_bytes, path), path)
        found = parse_python_metadata(text, path)
    elif member.mode & 0o111 and member.size >= 64:
        found = go_build_info(archive.extractfile(member), limits.max_file_bytes, path)
    if found is not None:
        index.paths.add(path)
        index.packages.extend(found)


def _text(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# ---------------------------------------------------------------------------------------------------------------
# os-release

def _resolve(path: str, links: dict[str, str], files: dict[str, bytes]) -> str | None:
    """Follow ``path`` through the layer's links (and links in its parent directories) to a regular file."""
    for _ in range(SYMLINK_HOPS):
        if path in files:
            return path
        # the first component (from the root) that is a link
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix in links:
                target = links[prefix]
                if target.startswith("="):
                    resolved = target[1:]
                elif target.startswith("/"):
                    resolved = _normal(target)
                else:
                    resolved = _normal(posixpath.join(posixpath.dirname(prefix), target))
                path = _normal(posixpath.join(resolved, *parts[i:]))
                break
        else:
            return None
    raise LayerUnreadable(f"symbolic link loop while resolving {path!r} (os-release)")


def _os_release(files: dict[str, bytes], links: dict[str, str]) -> dict | None:
    for candidate in OS_RELEASE_PATHS:
        real = _resolve(candidate, links, files)
        if real is not None:
            return parse_os_release(_text(files[real], real))
    return None


def parse_os_release(text: str) -> dict:
    """KEY=value lines, values quoted as in a shell (os-release(5))."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            words = [raw.strip("\"'")]
        values[key.strip()] = " ".join(words)
    return values


def distribution_of(os_release: dict | None) -> Distribution | None:
    if not os_release or not os_release.get("ID"):
        return None
    dist_id = os_release["ID"].lower()
    version_id = os_release.get("VERSION_ID", "")
    codename = os_release.get("VERSION_CODENAME") or None
    if codename is None and "(" in os_release.get("VERSION", ""):  # older Debian: VERSION="9 (stretch)"
        codename = os_release["VERSION"].split("(", 1)[1].rstrip(")").strip() or None
    if codename is None and dist_id == "debian" and not version_id:
        # testing and sid say only PRETTY_NAME="Debian GNU/Linux trixie/sid"
        pretty = os_release.get("PRETTY_NAME", "").split()
        codename = pretty[-1].split("/")[0] if pretty else None
    branch = None
    if dist_id == "alpine" and version_id:
        parts = version_id.split(".")
        branch = "edge" if "_" in version_id else "v" + ".".join(parts[:2])
    return Distribution(id=dist_id, version_id=version_id, codename=codename, branch=branch,
                        pretty_name=os_release.get("PRETTY_NAME"))


# ---------------------------------------------------------------------------------------------------------------
# Package databases

def _control_paragraphs(text: str, path: str) -> Iterator[dict[str, str]]:
    """The paragraphs of a Debian control-format file (deb-control(5)), strictly: a line that is neither a
    field nor a continuation makes the file unreadable, with its line number."""
    fields: dict[str, str] = {}
    last = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t":
            if last is None:
                raise LayerUnreadable(f"{path} does not parse: line {number} continues no field")
            fields[last] += "\n" + line.strip()
        elif ":" in line and not line.startswith("#"):
            name, _, value = line.partition(":")
            if not name or " " in name:
                raise LayerUnreadable(f"{path} does not parse: line {number} is not a field")
            last = name.strip().lower()
            fields[last] = value.strip()
        else:
            raise LayerUnreadable(f"{path} does not parse: line {number} is not a field")
    if fields:
        yield fields


def _check_debian_version(version: str, path: str, package: str) -> None:
    try:
        DebianVersion(version)
    except ValueError:
        raise LayerUnreadable(f"{path} does not parse: package {package} has an invalid version {version!r}") from None


def parse_dpkg_status(text: str, path: str = DPKG_STATUS) -> list[Package]:
    """Installed packages of a dpkg status file (or a distroless status.d entry), with their source package:
    ``Source: name`` or ``Source: name (version)`` when the source's version differs from the binary's."""
    packages = []
    for fields in _control_paragraphs(text, path):
        name = fields.get("package")
        if not name:
            raise LayerUnreadable(f"{path} does not parse: a paragraph without Package")
        status = fields.get("status", "install ok installed").split()
        if not status or status[-1] != "installed":
            continue
        version = fields.get("version")
        if not version:
            continue  # not a package (vcpkg writes its features as paragraphs of this file, without Version)
        _check_debian_version(version, path, name)
        source = source_version = None
        if fields.get("source"):
            source_field = fields["source"]
            source = source_field.split("(", 1)[0].strip()
            if "(" in source_field:
                source_version = source_field.split("(", 1)[1].rstrip(")").strip()
                _check_debian_version(source_version, path, name)
        packages.append(Package(name=name, version=version, kind="dpkg", source=source,
                                source_version=source_version, path=path))
    return packages


def parse_apk_installed(text: str, path: str = APK_INSTALLED) -> list[Package]:
    """apk's installed database: one-letter fields (P: name, V: version, o: origin), one package a paragraph."""
    packages = []
    name = version = origin = None
    for number, line in enumerate(text.splitlines() + [""], 1):
        if not line.strip():
            if name or version:
                if not (name and version):
                    raise LayerUnreadable(f"{path} does not parse: an entry without P: or V: (line {number})")
                packages.append(Package(name=name, version=version, kind="apk",
                                        source=origin if origin and origin != name else None,
                                        source_version=None, path=path))
            name = version = origin = None
            continue
        if len(line) < 2 or line[1] != ":":
            raise LayerUnreadable(f"{path} does not parse: line {number} is not a field")
        if line[0] == "P":
            name = line[2:]
        elif line[0] == "V":
            version = line[2:]
        elif line[0] == "o":
            origin = line[2:]
    return packages


def parse_python_metadata(text: str, path: str) -> list[Package]:
    """A Python distribution's core metadata (METADATA or PKG-INFO): its Name and Version."""
    headers = email.parser.HeaderParser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return []  # not a distribution's metadata after all
    return [Package(name=str(name).strip(), version=str(version).strip(), kind="python", path=path)]


# ---------------------------------------------------------------------------------------------------------------
# Go binaries

def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(data):
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    raise ValueError("truncated varint")


def go_build_info(fileobj, cap: int, path: str) -> list[Package] | None:
    """The modules a Go executable was built from (its main module, dependencies and Go's own version as the
    package "stdlib"), found by scanning at most ``cap`` bytes for the build info blob; None for anything else."""
    head = fileobj.read(4)
    if head != b"\x7fELF":
        return None
    read = 4
    window = b""
    while read < cap:
        chunk = fileobj.read(min(CHUNK, cap - read))
        if not chunk:
            return None
        offset = read - len(window)  # the file offset of window[0]
        window += chunk
        read += len(chunk)
        at = window.find(GO_BUILDINFO_MAGIC)
        while at >= 0 and (offset + at) % 16:
            at = window.find(GO_BUILDINFO_MAGIC, at + 1)
        if at >= 0:
            blob = window[at:]
            while len(blob) < 64 * 1024 and read < cap:  # the strings follow the 32-byte header
                more = fileobj.read(min(64 * 1024, cap - read))
                if not more:
                    break
                blob += more
                read += len(more)
            return _parse_go_blob(blob, path)
        window = window[-(len(GO_BUILDINFO_MAGIC) + 16):]
    return None


def _parse_go_blob(blob: bytes, path: str) -> list[Package] | None:
    if len(blob) < 32 or not blob[15] & GO_INLINE_STRINGS:
        return None  # Go before 1.18 stores pointers, not strings: not read (docs/ARCHITECTURE.md, Scanner)
    try:
        length, at = _uvarint(blob, 32)
        go_version = blob[at:at + length].decode("utf-8", "replace")
        at += length
        length, at = _uvarint(blob, at)
        modinfo = blob[at:at + length]
    except ValueError:
        return None
    if len(modinfo) > 2 * GO_MODINFO_FRAME:
        modinfo = modinfo[GO_MODINFO_FRAME:-GO_MODINFO_FRAME]
    packages = []
    if go_version.startswith("go"):
        packages.append(Package(name="stdlib", version=go_version, kind="go", path=path))
    modules: list[list[str]] = []
    for line in modinfo.decode("utf-8", "replace").splitlines():
        fields = line.split("\t")
        if fields[0] in ("mod", "dep") and len(fields) >= 3:
            modules.append([fields[1], fields[2]])
        elif fields[0] == "=>" and modules and len(fields) >= 3:
            modules[-1] = [fields[1], fields[2]]  # a replacement of the module before it
    for module, version in modules:
        packages.append(Package(name=module, version=version, kind="go", path=path))
    return packages


# ---------------------------------------------------------------------------------------------------------------
# Combining layers

def _under(path: str, prefix: str) -> bool:
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def combine(layers: list[tuple[str, LayerIndex]]) -> ImageIndex:
    """The image's distribution and packages, layer by layer: a layer's whiteouts and opaque directories delete
    what lower layers put there; a package database a layer writes replaces the one below it; a package keeps
    the layer that first added it (Quay's AddedBy) while later layers carry it unchanged."""
    by_path: dict[str, list[Package]] = {}  # a package database (or binary) -> its packages
    os_release: tuple[str, dict] | None = None
    os_release_paths: set[str] = set()
    for digest, layer in layers:
        deleted = list(layer.whiteouts) + list(layer.opaque_dirs)
        if deleted:
            for path in [p for p in by_path if any(_under(p, d) for d in deleted)]:
                del by_path[path]
            if any(_under(p, d) for p in os_release_paths for d in deleted):
                os_release, os_release_paths = None, set()
        layer_paths: dict[str, list[Package]] = {}
        for package in layer.packages:
            layer_paths.setdefault(package.path, []).append(package)
        for path, packages in layer_paths.items():
            before = {(p.kind, p.name, p.version): p.added_by for p in by_path.get(path, ())}
            by_path[path] = [_added(p, before.get((p.kind, p.name, p.version)) or digest) for p in packages]
        if layer.os_release is not None:
            os_release = (digest, layer.os_release)
            os_release_paths = {p for p in layer.paths if p in OS_RELEASE_PATHS} or set(OS_RELEASE_PATHS)
    seen: set[tuple] = set()
    packages = []
    for group in by_path.values():
        for package in group:
            key = (package.kind, package.name, package.version, package.source, package.source_version)
            if key not in seen:
                seen.add(key)
                packages.append(package)
    return ImageIndex(distribution=distribution_of(os_release[1] if os_release else None), packages=packages)


def _added(package: Package, digest: str) -> Package:
    if package.added_by == digest:
        return package
    return Package(name=package.name, version=package.version, kind=package.kind, source=package.source,
                   source_version=package.source_version, added_by=digest, path=package.path)
