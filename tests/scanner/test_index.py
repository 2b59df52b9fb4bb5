"""Indexing layers: formats, package databases, os-release, whiteouts, and the layers the indexer refuses."""
from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from scanner.index import (
    INDEXER_VERSION,
    LayerIndex,
    LayerUnreadable,
    Limits,
    combine,
    index_layer,
)

from .conftest import BOOKWORM_LAYER, VULNDATA, layer, tree_layer

LIMITS = Limits(max_inflated_bytes_per_layer=256 << 20, max_file_bytes=16 << 20)
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OS_RELEASE_DEBIAN = b'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'

pytestmark = pytest.mark.inprocess


def index(data: bytes, limits: Limits = LIMITS) -> LayerIndex:
    return index_layer(io.BytesIO(data), GZIP, limits)


def test_the_bookworm_fixture_is_debian_12_with_its_88_packages_and_their_source_packages():
    with open(BOOKWORM_LAYER, "rb") as stream:
        found = index_layer(stream, GZIP, LIMITS)
    image = combine([("sha256:base", found)])
    assert image.distribution.id == "debian"
    assert image.distribution.codename == "bookworm"  # etc/os-release is a symlink to ../usr/lib/os-release
    assert image.distribution.version_id == "12"
    assert len(image.packages) == 88
    by_name = {p.name: p for p in image.packages}
    assert by_name["libpcre2-8-0"].source == "pcre2" and by_name["libpcre2-8-0"].source_version is None
    assert (by_name["libcap2"].source, by_name["libcap2"].source_version) == ("libcap2", "1:2.66-4+deb12u3")
    assert by_name["libcom-err2"].source == "e2fsprogs"
    assert by_name["adduser"].source is None  # no Source: the binary's own name
    assert {p.added_by for p in image.packages} == {"sha256:base"}
    assert LayerIndex.from_json(found.to_json()) == found
    assert INDEXER_VERSION


def test_zstd_and_plain_tar_layers_are_read_whatever_the_media_type_says():
    with open(BOOKWORM_LAYER, "rb") as stream:
        raw = gzip.decompress(stream.read())
    for data in (zstandard.ZstdCompressor().compress(raw), raw):
        found = index_layer(io.BytesIO(data), "application/vnd.oci.image.layer.v1.tar", LIMITS)
        assert len(found.packages) == 88 and found.os_release["VERSION_CODENAME"] == "bookworm"


def test_alpine_branch_comes_from_os_release_version_id():
    image = combine([("sha256:alpine", index(tree_layer(VULNDATA / "fixtures" / "alpine34")))])
    assert image.distribution.id == "alpine"
    assert image.distribution.version_id == "3.4.6"
    assert image.distribution.branch == "v3.4"
    assert len(image.packages) == 11
    libcrypto = next(p for p in image.packages if p.name == "libcrypto1.0")
    assert (libcrypto.kind, libcrypto.version, libcrypto.source) == ("apk", "1.0.2h-r1", "openssl")


def test_distroless_status_d_and_source_with_version():
    found = index(layer({
        "etc/os-release": OS_RELEASE_DEBIAN,
        "var/lib/dpkg/status.d/libssl3": b"Package: libssl3\nVersion: 3.0.11-1~deb12u2+b1\n"
                                         b"Source: openssl (3.0.11-1~deb12u2)\nArchitecture: amd64\n",
        "var/lib/dpkg/status.d/libssl3.md5sums": b"d41d8cd98f00b204e9800998ecf8427e  usr/lib/libssl.so.3\n",
        "var/lib/dpkg/status.d/base-files": b"Package: base-files\nVersion: 12.4+deb12u5\n",
    }))
    by_name = {p.name: p for p in found.packages}
    assert set(by_name) == {"libssl3", "base-files"}
    assert (by_name["libssl3"].source, by_name["libssl3"].source_version) == ("openssl", "3.0.11-1~deb12u2")


def test_python_distributions_in_site_and_dist_packages():
    found = index(layer({
        "usr/lib/python3/dist-packages/Jinja2-2.10.dist-info/METADATA": b"Metadata-Version: 2.1\nName: Jinja2\n"
                                                                        b"Version: 2.10\n\nbody\n",
        "opt/app/lib/python3.11/site-packages/requests-2.19.0.egg-info/PKG-INFO": b"Name: requests\nVersion: 2.19.0\n",
        "usr/lib/python3/dist-packages/six-1.16.0.egg-info": b"Metadata-Version: 1.1\nName: six\nVersion: 1.16.0\n",
        "srv/not-installed/foo-1.0.dist-info/METADATA": b"Name: foo\nVersion: 1.0\n",
    }))
    assert sorted((p.name, p.version, p.kind) for p in found.packages) == [
        ("Jinja2", "2.10", "python"), ("requests", "2.19.0", "python"), ("six", "1.16.0", "python")]


def test_only_installed_dpkg_entries_count():
    found = index(layer({"var/lib/dpkg/status": b"Package: a\nStatus: install ok installed\nVersion: 1\n\n"
                                                b"Package: b\nStatus: deinstall ok config-files\nVersion: 2\n"}))
    assert [p.name for p in found.packages] == ["a"]


def test_real_dpkg_status_files_parse():
    counts = {}
    for path in sorted((VULNDATA / "fixtures" / "dpkg-status").glob("*.status")):
        counts[path.name] = len(index(layer({"var/lib/dpkg/status": path.read_bytes()})).packages)
    assert all(counts.values()), counts
    assert counts["texlive.status"] > 100


def test_a_whiteout_in_a_later_layer_deletes_the_package_database_below():
    with open(BOOKWORM_LAYER, "rb") as stream:
        base = index_layer(stream, GZIP, LIMITS)
    removed = index(layer({"var/lib/dpkg/.wh.status": b""}))
    assert removed.whiteouts == ["var/lib/dpkg/status"]
    image = combine([("sha256:base", base), ("sha256:rm", removed)])
    assert image.packages == []
    assert image.distribution.codename == "bookworm"  # os-release was not deleted


def test_opaque_directories_and_whiteouts_of_python_distributions():
    site = "usr/lib/python3/dist-packages/"
    lower = index(layer({site + "Jinja2-2.10.dist-info/METADATA": b"Name: Jinja2\nVersion: 2.10\n",
                         site + "six-1.16.0.dist-info/METADATA": b"Name: six\nVersion: 1.16.0\n"}))
    whiteout = index(layer({site + ".wh.Jinja2-2.10.dist-info": b""}))
    opaque = index(layer({site + ".wh..wh..opq": b"", site + "six-1.17.0.dist-info/METADATA":
                          b"Name: six\nVersion: 1.17.0\n"}))
    assert [p.name for p in combine([("a", lower), ("b", whiteout)]).packages] == ["six"]
    image = combine([("a", lower), ("b", opaque)])
    assert [(p.name, p.version, p.added_by) for p in image.packages] == [("six", "1.17.0", "b")]
    # the order of layers matters: the deletion applies only to what is below it
    assert sorted(p.name for p in combine([("b", whiteout), ("a", lower)]).packages) == ["Jinja2", "six"]


def test_a_rewritten_status_file_keeps_the_layer_that_added_each_package():
    first = b"Package: a\nStatus: install ok installed\nVersion: 1\n"
    second = first + b"\nPackage: b\nStatus: install ok installed\nVersion: 2\n"
    image = combine([("l1", index(layer({"var/lib/dpkg/status": first}))),
                     ("l2", index(layer({"var/lib/dpkg/status": second})))])
    assert sorted((p.name, p.added_by) for p in image.packages) == [("a", "l1"), ("b", "l2")]


def test_os_release_deleted_by_a_later_layer_leaves_no_distribution():
    base = index(layer({"usr/lib/os-release": OS_RELEASE_DEBIAN,
                        "etc/os-release": ("symlink", "../usr/lib/os-release")}))
    assert combine([("a", base)]).distribution.codename == "bookworm"
    assert combine([("a", base), ("b", index(layer({"usr/lib/.wh.os-release": b""})))]).distribution is None


def test_a_layer_without_package_database_is_unsupported():
    image = combine([("sha256:busybox", index(layer({"bin/busybox": (b"x", b"\x7fELF" + b"\0" * 100)})))])
    assert image.packages == [] and image.distribution is None and not image.supported


# -- Layers the indexer refuses, each with its reason ------------------------------------------------------------

def test_not_a_tar():
    with pytest.raises(LayerUnreadable, match="not a"):
        index(gzip.compress(b'{"mediaType": "application/vnd.cncf.helm.config.v1+json"}' * 20))
    with pytest.raises(LayerUnreadable, match="not a"):
        index(os.urandom(3000))


def test_truncated_layer():
    with open(BOOKWORM_LAYER, "rb") as stream:
        data = stream.read()
    with pytest.raises(LayerUnreadable, match="truncated"):
        index(data[: len(data) // 2])
    raw = gzip.decompress(data)
    with pytest.raises(LayerUnreadable, match="truncated"):
        index(raw[: len(raw) // 2])


def test_decompression_bomb():
    bomb = layer({"zeros": b"\0" * (8 << 20)})
    assert len(bomb) < 64 << 10
    with pytest.raises(LayerUnreadable, match="inflates to more than"):
        index(bomb, Limits(max_inflated_bytes_per_layer=1 << 20, max_file_bytes=1 << 20))


def test_symlink_loop_in_os_release():
    loop = layer({"etc/os-release": ("symlink", "../usr/lib/os-release"),
                  "usr/lib/os-release": ("symlink", "/etc/os-release")})
    with pytest.raises(LayerUnreadable, match="symbolic link loop"):
        index(loop)


def test_status_file_that_does_not_parse():
    with pytest.raises(LayerUnreadable, match="var/lib/dpkg/status does not parse: line 3"):
        index(layer({"var/lib/dpkg/status": b"Package: a\nVersion: 1\nthis is not a field\n"}))
    with pytest.raises(LayerUnreadable, match="invalid version"):
        index(layer({"var/lib/dpkg/status": b"Package: a\nVersion: not a version!\n"}))
    with pytest.raises(LayerUnreadable, match="lib/apk/db/installed does not parse"):
        index(layer({"lib/apk/db/installed": b"P:musl\nV:1.1\n\nnonsense\n"}))


def test_a_status_file_over_the_cap_is_refused():
    status = b"".join(b"Package: p%d\nVersion: 1\n\n" % i for i in range(2000))
    with pytest.raises(LayerUnreadable, match="larger than"):
        index(layer({"var/lib/dpkg/status": status}), Limits(max_inflated_bytes_per_layer=1 << 30, max_file_bytes=4096))


def test_os_release_through_a_hard_link_and_debian_testing():
    from scanner.index import distribution_of

    found = index(layer({"usr/lib/os-release": b'PRETTY_NAME="Debian GNU/Linux trixie/sid"\nID=debian\n',
                         "etc/os-release": ("hardlink", "usr/lib/os-release")}))
    assert distribution_of(found.os_release).codename == "trixie"
    assert {"etc/os-release", "usr/lib/os-release"} <= found.paths
    assert distribution_of({"ID": "debian", "VERSION": "9 (stretch)", "VERSION_ID": "9"}).codename == "stretch"


def test_any_object_with_read_is_a_stream():
    class OnlyRead:
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def read(self, size=-1):
            return self._data.read(min(size, 1000) if size and size > 0 else size)

    with open(BOOKWORM_LAYER, "rb") as stream:
        found = index_layer(OnlyRead(stream.read()), GZIP, LIMITS)
    assert len(found.packages) == 88
