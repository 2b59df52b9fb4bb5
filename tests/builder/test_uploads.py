"""The build request's multipart upload, parsed as it arrives (builder.filedrops.MultipartStream)."""
from __future__ import annotations

import os
import random

import pytest
import requests

from builder.filedrops import MultipartError, MultipartStream


def encoded(fields: dict, file: bytes, filename: str = "context.tar.gz") -> tuple[bytes, str]:
    """A body as requests (the bench's and most clients' library) sends it."""
    request = requests.Request("POST", "http://x/", data=fields,
                               files={"file": (filename, file, "application/gzip")}).prepare()
    return request.body, request.headers["Content-Type"]


def parse(body: bytes, content_type: str, sizes) -> tuple[MultipartStream, bytes]:
    received = bytearray()
    stream = MultipartStream(content_type, received.extend)
    at = 0
    for size in sizes:
        stream.feed(body[at:at + size])
        at += size
        if at >= len(body):
            break
    stream.feed(body[at:])
    return stream, bytes(received)


@pytest.mark.parametrize("sizes", [[1] * 100_000, [7, 13, 64], [65536] * 100, [10**9]])
def test_the_file_and_the_fields_come_out_whatever_the_chunks(sizes):
    # Data full of what looks like a boundary: CRLFs, dashes, the boundary's own start.
    file = b"\r\n--\r\n-" * 3000 + os.urandom(50_000) + b"\r\n--"
    body, content_type = encoded({"docker_tags": "a,b", "build_args": '{"X": "1"}'}, file)
    if sizes == [1] * 100_000:
        sizes = [1] * len(body)
    stream, received = parse(body, content_type, sizes)
    assert stream.complete
    assert received == file
    assert stream.file == {"filename": "context.tar.gz", "size": len(file), "content_type": "application/gzip"}
    assert stream.fields == {"docker_tags": "a,b", "build_args": '{"X": "1"}'}


def test_random_chunks_of_a_large_upload():
    file = os.urandom(3 * 1024 * 1024)
    body, content_type = encoded({"docker_tags": "x"}, file)
    rng = random.Random(7)
    stream, received = parse(body, content_type, [rng.randint(1, 200_000) for _ in range(1000)])
    assert stream.complete and received == file and stream.fields == {"docker_tags": "x"}


def test_an_upload_cut_short_is_not_complete():
    body, content_type = encoded({"docker_tags": "x"}, b"FROM scratch\n")
    stream, _ = parse(body[:-10], content_type, [100])
    assert not stream.complete


@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/json", "multipart/mixed; boundary=x"])
def test_a_multipart_upload_needs_its_boundary(content_type):
    with pytest.raises(MultipartError, match="multipart/form-data with a boundary"):
        MultipartStream(content_type, lambda data: None)


def test_large_form_fields_and_headers_are_refused():
    body, content_type = encoded({"docker_tags": "x" * (MultipartStream.MAX_FIELDS + 1)}, b"FROM scratch\n")
    with pytest.raises(MultipartError, match="form fields of the upload are larger"):
        parse(body, content_type, [65536] * 100)
    boundary = content_type.split("boundary=")[1].encode()
    body = b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"a\"\r\nX: " + b"y" * 20_000
    with pytest.raises(MultipartError, match="headers are too long"):
        parse(body, content_type, [65536])


def uploads(server) -> list[str]:
    return sorted(p.name for p in (server.data_dir / "storage" / "uploads").glob("filedrop-*"))


def test_build_requests_whose_upload_is_refused_leave_no_file_behind(server):
    from tests.api import Api
    from tests.conftest import ADMIN_PASSWORD

    admin = Api(server, ("admin", ADMIN_PASSWORD))
    admin.ok("POST", "/repository", {"repository": "cut", "visibility": "private"})
    url = f"{server.url}/api/v1/repository/admin/cut/build/"
    before = uploads(server)
    body, content_type = encoded({"docker_tags": "x"}, b"FROM scratch\n")
    cut = body[:body.rindex(b"\r\n--")]  # no closing boundary
    r = requests.post(url, data=cut, headers={"Content-Type": content_type}, auth=("admin", ADMIN_PASSWORD),
                      timeout=30)
    assert r.status_code == 400 and "ended before its closing boundary" in r.json()["error_message"], r.text
    no_file = requests.post(url, data={"docker_tags": "x"}, files={"other": ("x", b"y")},
                            auth=("admin", ADMIN_PASSWORD), timeout=30)
    assert no_file.status_code == 400 and "needs a part named 'file'" in no_file.json()["error_message"]

    malformed = body.replace(b"Content-Disposition: form-data", b"X-Nothing: here", 1)  # a part without a name
    r = requests.post(url, data=malformed, headers={"Content-Type": content_type}, auth=("admin", ADMIN_PASSWORD),
                      timeout=30)
    assert r.status_code == 400 and "Content-Disposition" in r.json()["error_message"], r.text
    r = requests.post(url, data=body, headers={"Content-Type": "multipart/form-data"},  # no boundary
                      auth=("admin", ADMIN_PASSWORD), timeout=30)
    assert r.status_code == 400 and "boundary" in r.json()["error_message"], r.text

    server.create_user("reader", "reader-pass-1")
    r = requests.post(url, files={"file": ("Dockerfile", b"FROM scratch\n")}, auth=("reader", "reader-pass-1"),
                      timeout=30)
    assert r.status_code in (403, 404), r.text
    assert uploads(server) == before
    assert admin.ok("GET", "/repository/admin/cut/build/")["builds"] == []


def test_the_readmes_curl_upload_is_streamed_whole(server, tmp_path):
    """The README's build request, ``curl -F file=@... -F docker_tags=...``: a Dockerfile, and a 3 MB context that
    curl sends with ``Expect: 100-continue``; each starts a build whose file drop holds exactly the bytes sent."""
    import io
    import subprocess
    import tarfile

    from tests.api import Api
    from tests.conftest import ADMIN_PASSWORD

    Api(server, ("admin", ADMIN_PASSWORD)).ok("POST", "/repository", {"repository": "curly", "visibility": "private"})
    (tmp_path / "Dockerfile").write_bytes(b"FROM scratch\nLABEL a=b\n")
    with tarfile.open(tmp_path / "ctx.tar.gz", "w:gz") as archive:
        for name, data in (("blob", os.urandom(3 << 20)), ("Dockerfile", b"FROM scratch\nCOPY blob /blob\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    for name in ("Dockerfile", "ctx.tar.gz"):
        sent = tmp_path / name
        r = subprocess.run(["curl", "-sSv", "-u", f"admin:{ADMIN_PASSWORD}", "-F", f"file=@{sent}",
                            "-F", "docker_tags=v1,latest", f"{server.url}/api/v1/repository/admin/curly/build/"],
                           capture_output=True, text=True, timeout=60)
        assert "< HTTP/1.1 201" in r.stderr, r.stderr
        if sent.stat().st_size > 1 << 20:
            assert "> Expect: 100-continue" in r.stderr  # curl waited for the server's go-ahead
        build = __import__("json").loads(r.stdout)
        assert build["tags"] == ["v1", "latest"] and build["manual_user"] == "admin"
        assert server.sql("SELECT size FROM file_drop ORDER BY id DESC LIMIT 1") == [(sent.stat().st_size,)]
