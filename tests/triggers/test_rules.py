"""Payload parsing, tag templates, skip rules and signatures, as plain functions."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from slipway.errors import Invalid
from triggers import payloads, rules, signatures, templates

SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


def github_push(ref="refs/heads/main", deleted=False, message="Fix the thing", files=("src/app.py",)):
    return {
        "ref": ref, "before": "0" * 40, "after": "0" * 40 if deleted else SHA, "deleted": deleted,
        "head_commit": None if deleted else {
            "id": SHA, "message": message, "timestamp": "2026-11-20T10:00:00Z",
            "url": f"https://github.com/acme/app/commit/{SHA}",
            "author": {"name": "Ada", "email": "ada@x.io", "username": "ada"},
            "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"}},
        "commits": [] if deleted else [{"id": SHA, "added": list(files), "modified": [], "removed": []}],
        "repository": {"ssh_url": "git@github.com:acme/app.git", "clone_url": "https://github.com/acme/app.git",
                       "default_branch": "main"},
        "sender": {"avatar_url": "https://avatars/ada"},
    }


def parse(doc, **headers):
    [push] = payloads.parse(headers, json.dumps(doc).encode()).pushes
    return push


def test_github_push_becomes_quay_metadata():
    push = parse(github_push(), **{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"})
    meta = push.metadata()
    assert meta["commit"] == SHA and meta["ref"] == "refs/heads/main" and meta["default_branch"] == "main"
    assert meta["git_url"] == "git@github.com:acme/app.git"
    assert meta["parsed_ref"] == {"branch": "main", "tag": None, "remote": None}
    assert meta["commit_info"]["short_sha"] == SHA[:7]
    assert meta["commit_info"]["author"]["username"] == "ada"
    assert push.changed_files == ["src/app.py"]
    assert payloads.parse({"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"},
                          json.dumps(github_push()).encode()).retry_key == "d-1"


def test_pings_and_deletions_are_skipped():
    with pytest.raises(payloads.Skip, match="ping"):
        parse({"zen": "Keep it simple", "hook_id": 1}, **{"X-GitHub-Event": "ping"})
    with pytest.raises(payloads.Skip, match="deleted"):
        parse(github_push(deleted=True), **{"X-GitHub-Event": "push"})
    with pytest.raises(payloads.Skip, match="deleted"):
        parse({"object_kind": "push", "ref": "refs/heads/x", "checkout_sha": None, "after": "0" * 40},
              **{"X-Gitlab-Event": "Push Hook"})
    deleted = payloads.parse({"X-Event-Key": "repo:push"}, json.dumps(
        {"push": {"changes": [{"new": None, "old": {"type": "branch", "name": "x"}}]}}).encode())
    assert deleted.pushes == [] and deleted.skipped == [("refs/heads/x", "deleted: nothing to build")]


def test_gitlab_bitbucket_gitea_and_custom_payloads():
    gitlab = parse({"object_kind": "tag_push", "ref": "refs/tags/v2.0", "checkout_sha": SHA, "after": SHA,
                    "user_username": "bob", "project": {"git_ssh_url": "git@gitlab.com:a/b.git",
                                                        "default_branch": "main"},
                    "commits": [{"id": SHA, "message": "release", "timestamp": "t", "url": "u",
                                 "added": ["x"], "modified": [], "removed": []}]},
                   **{"X-Gitlab-Event": "Tag Push Hook"})
    assert gitlab.metadata()["parsed_ref"]["tag"] == "v2.0" and gitlab.git_url == "git@gitlab.com:a/b.git"
    bitbucket = parse({"repository": {"full_name": "team/repo", "mainbranch": {"name": "develop"}},
                       "push": {"changes": [{"new": {"type": "branch", "name": "develop", "target": {
                           "hash": SHA, "message": "m", "date": "d",
                           "author": {"user": {"nickname": "carl"}}}}}]}}, **{"X-Event-Key": "repo:push"})
    assert bitbucket.ref == "refs/heads/develop" and bitbucket.default_branch == "develop"
    assert bitbucket.git_url == "git@bitbucket.org:team/repo.git"
    gitea = parse(github_push(ref="refs/heads/feature"), **{"X-Gitea-Event": "push"})
    assert gitea.source == "gitea" and gitea.metadata()["parsed_ref"]["branch"] == "feature"
    custom = parse({"commit": SHA, "ref": "refs/heads/main", "default_branch": "main",
                    "commit_info": {"url": "u", "message": "hello", "date": "2026-01-01",
                                    "author": {"username": "d", "url": "u", "avatar_url": "a"}}})
    assert custom.commit_info["author"]["username"] == "d" and custom.changed_files is None


@pytest.mark.parametrize("body,fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({"commit": "xyz", "ref": "refs/heads/main", "default_branch": "main"}).encode(), "commit"),
    (json.dumps({"commit": SHA, "ref": "main", "default_branch": "main"}).encode(), "ref"),
    (json.dumps({"hello": "world"}).encode(), "matches no known format"),
    (json.dumps({"commit": SHA, "ref": "refs/heads/m", "default_branch": "m", "commit_info": {"url": 5}}).encode(),
     "commit_info.url: 5 is not of type 'string'"),
])
def test_payloads_that_fit_no_schema_say_why(body, fragment):
    with pytest.raises(Invalid) as err:
        payloads.parse({}, body)
    assert fragment in err.value.message


def test_tag_templates_render_drop_missing_and_sanitize():
    meta = parse(github_push(ref="refs/heads/feature/login"), **{"X-GitHub-Event": "push"}).metadata()
    tags = templates.tags_for(["${parsed_ref.branch}-${commit_info.short_sha}", "${parsed_ref.tag}",
                               "build-${commit_info.date}", "by-${commit_info.author.username}"], meta, True, True)
    assert tags == [f"feature-login-{SHA[:7]}", "build-2026-11-20T10-00-00Z", "by-ada", "feature-login"]
    main = parse(github_push(), **{"X-GitHub-Event": "push"}).metadata()
    assert templates.tags_for([], main, True, True) == ["main", "latest"]
    assert templates.tags_for([], main, False, False) == [SHA[:7]]
    tag = parse(github_push(ref="refs/tags/v1.2.3"), **{"X-GitHub-Event": "push"}).metadata()
    assert templates.tags_for(["${parsed_ref.branch}"], tag, True, True) == ["v1.2.3"]
    assert templates.as_tag("-.weird tag/with:chars" + "x" * 200) == "weird-tag-with-chars" + "x" * 108


def test_invalid_templates_are_refused_naming_the_variable():
    with pytest.raises(Invalid, match=r"unknown variable '\$\{commit_info.nope\}'"):
        templates.check_templates(["ok-${commit}", "bad-${commit_info.nope}"])
    with pytest.raises(Invalid, match="unclosed"):
        templates.check_templates(["x-${commit"])


def test_skip_rules():
    push = parse(github_push(message="Tweak docs [skip build]"), **{"X-GitHub-Event": "push"})
    assert "[skip build]" in rules.skip_reason(push, None, [], [])
    push = parse(github_push(message="WIP [Build Skip] now"), **{"X-GitHub-Event": "push"})
    assert "[build skip]" in rules.skip_reason(push, None, [], [])
    push = parse(github_push(ref="refs/heads/feature"), **{"X-GitHub-Event": "push"})
    assert "does not match" in rules.skip_reason(push, "heads/main", [], [])
    assert rules.skip_reason(push, "heads/.*", [], []) is None
    assert "does not match" in rules.skip_reason(push, "heads/feat", [], [])  # the whole string must match
    docs = parse(github_push(files=("docs/a.md", "docs/b.md")), **{"X-GitHub-Event": "push"})
    assert "included_paths" in rules.skip_reason(docs, None, ["src/*"], [])
    assert "ignored_paths" in rules.skip_reason(docs, None, [], ["docs/*"])
    assert rules.skip_reason(parse(github_push(), **{"X-GitHub-Event": "push"}), None, ["src/*"], ["docs/*"]) is None
    with pytest.raises(Invalid, match="Invalid branchtag_regex"):
        rules.check_regex("heads/(unclosed")


def test_signatures():
    body = b'{"ref": "refs/heads/main"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signatures.verify("s3cret", {"X-Hub-Signature-256": good}, body) is None
    tampered = good[:-1] + ("1" if good[-1] == "0" else "0")
    assert "does not match" in signatures.verify("s3cret", {"X-Hub-Signature-256": tampered}, body)
    assert "does not match" in signatures.verify("other", {"X-Hub-Signature-256": good}, body)
    assert "sha1" in signatures.verify("s3cret", {"X-Hub-Signature": "sha1=abc"}, body)
    assert signatures.verify("s3cret", {"X-Gitea-Signature": good[7:]}, body) is None
    assert signatures.verify("s3cret", {"X-Gitlab-Token": "s3cret"}, body) is None
    assert "does not match" in signatures.verify("s3cret", {"X-Gitlab-Token": "nope"}, body)
    assert "not signed" in signatures.verify("s3cret", {}, body)


def test_custom_git_minimal_payload_and_every_problem_at_once():
    minimal = payloads.parse({}, json.dumps({"commit": SHA, "ref": "refs/heads/main", "default_branch": "main"})
                             .encode())
    assert minimal.source == "custom-git" and minimal.pushes[0].commit_info == {}
    partial = parse({"commit": SHA, "ref": "refs/tags/v1", "default_branch": "main",
                     "commit_info": {"message": "only a message", "author": {"username": "dev"}}})
    assert partial.commit_info == {"message": "only a message",
                                   "author": {"username": "dev", "url": "", "avatar_url": ""}}
    with pytest.raises(Invalid) as err:
        payloads.parse({}, json.dumps({"commit": "xyz", "ref": "main", "commit_info": {"url": 1, "author": "me"}})
                       .encode())
    message = err.value.message
    for fragment in ("commit: 'xyz' does not match", "ref: 'main' does not match", "'default_branch' is a required",
                     "commit_info.url: 1 is not of type 'string'", "commit_info.author: 'me' is not of type 'object'"):
        assert fragment in message, message


def test_form_encoded_bodies():
    doc = github_push()
    from urllib.parse import urlencode

    form = urlencode({"payload": json.dumps(doc)}).encode()
    event = payloads.parse({"X-GitHub-Event": "push", "Content-Type": "application/x-www-form-urlencoded"}, form)
    assert event.pushes[0].commit == SHA
    # curl -d sends JSON labelled as a form (a custom-git hook written in a hurry): read as JSON.
    labelled = payloads.decode({"Content-Type": "application/x-www-form-urlencoded"}, b' {"commit": "abc"}')
    assert labelled == {"commit": "abc"}
    with pytest.raises(Invalid, match="no single 'payload' field"):
        payloads.parse({"Content-Type": "application/x-www-form-urlencoded"}, b"other=1")
    with pytest.raises(Invalid, match="not valid JSON"):
        payloads.parse({"Content-Type": "application/x-www-form-urlencoded"}, b"payload=%7Bnope")
    with pytest.raises(Invalid, match="nested too deeply"):  # nesting deeper than the parser's stack: 400, not 500
        payloads.parse({"Content-Type": "application/json"}, b"[" * 200000 + b"]" * 200000)


def test_retry_keys_are_the_documented_ones():
    def key(doc, **headers):
        return payloads.parse(headers, json.dumps(doc).encode()).retry_key

    gitlab = {"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": SHA, "after": SHA, "commits": []}
    assert key(gitlab, **{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "shared"}) is None
    assert key(gitlab, **{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "shared",
                          "Idempotency-Key": "k"}) == "k"
    bitbucket = {"push": {"changes": [{"new": {"type": "branch", "name": "m", "target": {"hash": SHA}}}]}}
    assert key(bitbucket, **{"X-Event-Key": "repo:push", "X-Hook-UUID": "hook"}) is None
    assert key(bitbucket, **{"X-Event-Key": "repo:push", "X-Hook-UUID": "hook", "X-Request-UUID": "r"}) == "r"
    assert key(github_push(), **{"X-Gitea-Event": "push", "X-Gitea-Delivery": "g", "X-GitHub-Delivery": "g"}) == "g"


def test_standard_webhooks_signature():
    import base64

    body = b'{"object_kind": "push"}'
    key = b"k" * 32
    secret = "whsec_" + base64.b64encode(key).decode()
    signed = base64.b64encode(hmac.new(key, b"msg-1.1700000000." + body, hashlib.sha256).digest()).decode()
    headers = {"webhook-id": "msg-1", "webhook-timestamp": "1700000000", "webhook-signature": f"v0,x v1,{signed}"}
    assert signatures.verify(secret, headers, body, now=1700000100) is None
    assert "away from the server's clock" in signatures.verify(secret, headers, body, now=1700001000)
    assert "does not match" in signatures.verify(secret, {**headers, "webhook-id": "msg-2"}, body, now=1700000000)
    assert "needs the webhook-id" in signatures.verify(secret, {"webhook-signature": "v1,x"}, body)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, prefix + (i,))


def _replaced(doc, path, value):
    doc = json.loads(json.dumps(doc))
    if not path:
        return value
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize("doc,headers", [
    (github_push(), {"X-GitHub-Event": "push"}),
    ({"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": SHA, "after": SHA, "before": SHA,
      "user_username": "bob", "project": {"web_url": "https://gl/a/b", "default_branch": "main"},
      "commits": [{"id": SHA, "message": "m", "timestamp": "t", "url": "u", "added": ["x"]}]},
     {"X-Gitlab-Event": "Push Hook"}),
    ({"repository": {"full_name": "t/r"}, "push": {"changes": [
        {"new": {"type": "branch", "name": "main", "target": {"hash": SHA, "message": "m", "date": "d", "author": {
            "user": {"nickname": "c", "links": {"avatar": {"href": "a"}}}}, "links": {"html": {"href": "h"}}}},
         "old": {"type": "branch", "name": "main", "target": {"hash": SHA}}}]}}, {"X-Event-Key": "repo:push"}),
    ({"eventKey": "repo:refs_changed", "actor": {"name": "a"}, "repository": {"links": {"clone": [
        {"name": "ssh", "href": "ssh://x"}]}}, "changes": [{"refId": "refs/heads/main", "fromHash": SHA,
                                                              "toHash": SHA, "type": "UPDATE"}]},
     {"X-Event-Key": "repo:refs_changed"}),
    ({"commit": SHA, "ref": "refs/heads/main", "default_branch": "main", "commit_info": {
        "url": "u", "message": "m", "date": "d", "author": {"username": "a", "url": "u", "avatar_url": "v"}}}, {}),
])
def test_payloads_of_the_wrong_types_are_refused_or_skipped_never_crash(doc, headers):
    for path in list(_paths(doc)):
        for value in (None, 5, "x", [], {}, [1], True, {"a": 1}):
            body = json.dumps(_replaced(doc, path, value)).encode()
            try:
                event = payloads.parse(headers, body)
            except (Invalid, payloads.Skip):
                continue
            for push in event.pushes:
                assert isinstance(push.commit, str) and isinstance(push.ref, str), (path, value)
                rules.skip_reason(push, "heads/.*", ["src/*"], [])
                meta = push.metadata()
                templates.tags_for(["${commit_info.message}-${commit_info.author.username}"], meta, True, True)
                json.dumps(meta)
