"""HTTPS with a self-signed pair (verified by clients that trust it), and URLs behind a TLS-terminating proxy."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import requests

from tests.conftest import ADMIN_PASSWORD, SlipwayServer
from tests.images import make_oci_layout


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    srv = SlipwayServer(tmp_path_factory.mktemp("tls"), tls=True).start()
    srv.verify = str(srv.data_dir / "tls" / "cert.pem")
    yield srv
    srv.stop()


def test_self_signed_certificate_is_made_once_and_trust_is_explained(tls_server):
    cert = tls_server.data_dir / "tls" / "cert.pem"
    assert cert.exists() and oct((tls_server.data_dir / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
    assert "/etc/containers/certs.d/" in tls_server.log_text()
    r = requests.get(f"{tls_server.url}/v2/", verify=str(cert))  # verified against the made certificate
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith(
        f'Bearer realm="https://{tls_server.host}/v2/auth"')
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_server.url}/v2/", verify=True)  # not trusted by default: it is self-signed
    before = cert.read_bytes()
    tls_server.restart()
    assert cert.read_bytes() == before


def test_skopeo_verifies_the_certificate_it_was_given(tls_server, tools, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(tls_server.data_dir / "tls" / "cert.pem", certs / "ca.crt")
    layout = tmp_path / "img"
    make_oci_layout(layout)
    ref = f"docker://{tls_server.host}/admin/over-tls:1"
    tools.skopeo("copy", "--dest-cert-dir", str(certs), "--dest-creds", f"admin:{ADMIN_PASSWORD}",
                 f"oci:{layout}:latest", ref)
    out = tools.skopeo("inspect", "--cert-dir", str(certs), "--creds", f"admin:{ADMIN_PASSWORD}", ref)
    assert '"RepoTags": [\n        "1"' in out.stdout
    untrusted = tools.skopeo("inspect", "--creds", f"admin:{ADMIN_PASSWORD}", ref, check=False)
    assert untrusted.returncode != 0 and "certificate" in untrusted.stderr


def test_python_dxf_mount_and_delete_over_https(tls_server):
    from dxf import DXF

    def auth(dxf, response):
        # Slipway answers a too-narrow token with 403 + a challenge (RFC 6750 insufficient_scope);
        # python-dxf re-authenticates only on 401, so it asks for everything up front, as its docs advise.
        dxf.authenticate("admin", ADMIN_PASSWORD, actions=["*"], response=response)

    cert = tls_server.verify
    source = DXF(tls_server.host, "admin/dxf-source", auth, tlsverify=cert)
    data = os.urandom(50000)
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        blob = source.push_blob(tmp.name)
    target = DXF(tls_server.host, "admin/dxf-target", auth, tlsverify=cert)
    assert target.mount_blob("admin/dxf-source", blob) == blob
    assert target.blob_size(blob) == len(data)
    assert b"".join(target.pull_blob(blob)) == data
    target.set_alias("v1", blob)  # a manifest referencing the mounted blob
    assert target.list_aliases() == ["v1"]
    target.del_alias("v1")
    assert target.list_aliases() == []
    target.del_blob(blob)
    with pytest.raises(requests.exceptions.HTTPError):
        target.blob_size(blob)
    assert source.blob_size(blob) == len(data)  # the link in the other repository stays


def test_forwarded_scheme_and_host_from_a_trusted_proxy(server):
    # The test client is on loopback, which is a trusted proxy by default.
    r = server.v2("GET", "/v2/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"})
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="https://registry.example.com/v2/auth"')
    r = server.v2("GET", "/v2/", headers={"Forwarded": 'for=10.0.0.1;proto=https;host="reg.example.org"'})
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="https://reg.example.org/v2/auth"')
    token = server.token("repository:admin/proxied:pull,push")
    r = server.v2("POST", "/v2/admin/proxied/blobs/uploads/", token, headers={"X-Forwarded-Proto": "https"})
    assert r.status_code == 202 and r.headers["Location"].startswith("/v2/admin/proxied/blobs/uploads/")


def test_forwarded_headers_from_an_untrusted_address_are_ignored(tmp_path):
    srv = SlipwayServer(tmp_path, extra_env={"SLIPWAY_SERVER__TRUSTED_PROXIES": "10.9.9.9/32"}).start()
    try:
        r = srv.v2("GET", "/v2/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
        assert r.headers["WWW-Authenticate"].startswith(f'Bearer realm="http://{srv.host}/v2/auth"')
    finally:
        srv.stop()
