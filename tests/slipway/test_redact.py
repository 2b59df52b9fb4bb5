"""The one redaction rule (slipway/redact.py)."""
from slipway import redact


def test_urls_lose_their_credentials_and_query_values():
    assert redact.url("https://user:pa%40ss@git.example.com:8443/a/b.git") == "https://***@git.example.com:8443/a/b.git"
    assert redact.url("https://ghp_token@github.com/o/r.git") == "https://***@github.com/o/r.git"  # a token as user
    assert redact.url("ssh://git@github.com/o/r.git") == "ssh://git@github.com/o/r.git"  # an account name
    assert redact.url("ssh://git:pw@host/r.git") == "ssh://***@host/r.git"
    assert redact.url("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert redact.url("https://h/hook?token=abc&v=1#frag") == "https://h/hook?token=***&v=***#frag"
    assert redact.url("https://hooks.slack.com/services/T000/B000/XXXX") == "https://hooks.slack.com/services/***"
    assert redact.url("") == "" and redact.url(None) is None
    assert redact.url("http://[::1") == "***"  # unparseable: nothing of it


def test_text_redacts_every_url_and_the_known_secrets_of_given_urls():
    url = "http://u:secret-pw@127.0.0.1:9/hook?token=tok-12345"
    error = ("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: /hook?token=tok-12345. "
             "See https://a:b@example.com/x?q=1.")
    assert redact.text(error, url) == ("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with "
                                       "url: /hook?token=***. See https://***@example.com/x?q=***.")
    assert redact.text("refused secret-pw", url) == "refused ***"
    slack = "https://hooks.slack.com/services/T000/B000/XXXXYYYY"
    assert redact.text("url: /services/T000/B000/XXXXYYYY", slack) == "url: /services/***/***/***"
    assert redact.text("no url here, v=1", url) == "no url here, v=1"
    assert redact.text(None) is None


def test_request_uris_hide_only_secret_parameters():
    assert redact.request_uri("/api/v1/filedrop/ab?expires=1&signature=deadbeef") == \
        "/api/v1/filedrop/ab?expires=1&signature=***"
    assert redact.request_uri("/v2/auth?scope=repository:a/b:pull&service=h") == \
        "/v2/auth?scope=repository:a/b:pull&service=h"
    assert redact.request_uri("/v2/") == "/v2/"
