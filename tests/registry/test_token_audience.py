"""All nodes of one Slipway are one registry service, named by server.public_url: tokens are issued for it
and a token for another service is refused, even when signed with the same secret."""
from __future__ import annotations

from accounts.identity import ANONYMOUS
from registry.tokens import Scope, TokenService, service_of

SCOPE = [Scope("repository", "ns/app", ("pull",))]


def test_with_a_public_url_only_tokens_for_this_service_are_accepted():
    assert service_of("https://registry.example.com/") == "registry.example.com"
    assert service_of("http://lb.internal:8080") == "lb.internal:8080" and service_of("") is None
    ours = TokenService("shared-secret-of-two-slipways-0123456789", audience="registry.example.com")
    other = TokenService("shared-secret-of-two-slipways-0123456789", audience="other.example.com")
    token, _ = ours.issue(ANONYMOUS, SCOPE, "registry.example.com")
    assert ours.verify(token) is not None
    assert other.verify(token) is None  # another Slipway sharing the secret
    foreign, _ = other.issue(ANONYMOUS, SCOPE, "other.example.com")
    assert ours.verify(foreign) is None


def test_without_a_public_url_the_service_is_not_checked():
    service = TokenService("a-secret-of-one-slipway-0123456789abcdef")
    token, _ = service.issue(ANONYMOUS, SCOPE, "127.0.0.1:8080")
    assert service.verify(token) is not None
