"""The rules with one home and the collaborators that are objects, checked in-process (no server)."""
from __future__ import annotations

import hashlib
import re
import threading

import pytest

from accounts.users import VerifiedPasswords
from registry import names
from registry.blobs import RunningHashes
from slipway import crypto, urls, variables
from slipway.config import load


class FakeRequest:
    def __init__(self, protocol="http", host="10.1.2.3:8080", headers=None):
        self.protocol, self.host, self.headers = protocol, host, headers or {}


def test_the_public_base_url_comes_from_the_config_else_the_request_else_localhost():
    configured = load(environ={"SLIPWAY_SERVER__PUBLIC_URL": "https://registry.example/"})
    assert urls.base_url(configured, FakeRequest()) == "https://registry.example"
    plain = load(environ={"SLIPWAY_SERVER__PORT": "9000"})
    assert urls.base_url(plain) == "http://localhost:9000"
    assert urls.base_url(plain, FakeRequest()) == "http://10.1.2.3:8080"
    proxied = FakeRequest(headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "r.example, other"})
    assert urls.base_url(plain, proxied) == "http://10.1.2.3:8080"  # not from a trusted proxy
    assert urls.base_url(plain, proxied, trusted_proxy=True) == "https://r.example"
    forwarded = FakeRequest(headers={"Forwarded": 'proto=https;host="f.example", proto=http'})
    assert urls.base_url(plain, forwarded, trusted_proxy=True) == "https://f.example"
    assert urls.host("https://f.example:8443") == "f.example:8443"


def test_variables_are_filled_in_one_way_and_unknown_ones_stay_as_written():
    assert variables.names("${a.b}-x-${c}") == ["a.b", "c"]
    assert variables.unclosed("${a}-${b") and not variables.unclosed("${a}")
    assert variables.whole("${a.b}") == "a.b" and variables.whole("x${a}") is None
    assert variables.substitute("${a}/${b}", {"a": "1"}.get) == "1/${b}"
    assert variables.substitute("$A ${A} $$", {"A": "v"}.get, bare=True) == "v v $$"
    assert variables.lookup({"a": {"b": 5}}, "a.b") == 5 and variables.lookup({"a": 1}, "a.b") is None


def test_the_tag_grammar_has_one_copy():
    assert names.is_tag("v1.0_rc-2") and not names.is_tag(".v1") and not names.is_tag("x" * 129)
    assert names.is_tag("x" * 128) and not names.is_tag(None)
    assert re.fullmatch(names.TAG_PATTERN, "latest") and not re.fullmatch(names.TAG_PATTERN, "-x")
    assert names.as_tag("-.feature/new:thing") == "feature-new-thing" and names.as_tag("..") is None
    assert names.as_tag("ü" * 3) is None and names.is_tag(names.as_tag("aü" * 100))


def test_a_cipher_is_an_object_and_tests_install_their_own():
    cipher = crypto.Cipher("one secret")
    token = cipher.encrypt("hello")
    assert cipher.decrypt(token) == "hello"
    with pytest.raises(ValueError):
        crypto.Cipher("another secret").decrypt(token)
    with crypto.using(cipher):
        assert crypto.decrypt(crypto.encrypt("x")) == "x" and crypto.cipher() is cipher


def test_verified_passwords_expire_with_their_clock_and_their_hash():
    now = [1000.0]
    pairs = VerifiedPasswords(ttl=300, clock=lambda: now[0])
    pairs.remember("ada", "pw", "hash1")
    assert pairs.known("ada", "pw", "hash1")
    assert not pairs.known("ada", "other", "hash1") and not pairs.known("ada", "pw", "hash2")
    now[0] += 301
    assert not pairs.known("ada", "pw", "hash1")


def test_running_hashes_are_safe_to_share_between_threads():
    hashes = RunningHashes(limit=50)
    errors = []

    def churn(n: int) -> None:
        try:
            for i in range(2000):
                key = f"{n}-{i % 80}"
                hashes.remember(key, i, hashlib.sha256(), None)
                hashes.take(f"{n}-{(i * 7) % 80}")
        except Exception as e:  # an OrderedDict changed during an unlocked popitem raises here
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(hashes) <= 50
    hashes.remember("u", 10, "h", "f")
    assert hashes.take("u") == (10, "h", "f") and hashes.take("u") is None
