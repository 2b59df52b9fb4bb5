"""The build and automation pages' own rules in-process: build arguments from a form, the trigger tag preview
(the tag-template and regex rules themselves), the notification body a form makes, the usage-log chart."""
from __future__ import annotations

import pytest

from slipway.errors import Invalid


def test_build_arguments_are_name_value_lines():
    from ui.tabs_builds import duration_text, parse_build_args

    assert parse_build_args("A=1\n\n# note\n B = x=y \nEMPTY=") == {"A": "1", "B": " x=y", "EMPTY": ""}
    with pytest.raises(Invalid, match="line 2"):
        parse_build_args("A=1\nnot an assignment")
    assert [duration_text(s) for s in (None, 7, 75, 3725)] == ["—", "7s", "1m 15s", "1h 02m"]


def test_the_tag_preview_uses_the_trigger_rules():
    from ui.tabs_triggers import config_from, full_ref, preview

    values = {"build_source": "", "dockerfile_path": "", "context": "", "branchtag_regex": "heads/(main|rel-.*)",
              "tag_templates": "${parsed_ref.branch}-${commit_info.short_sha}\n\n", "default_branch": "",
              "default_tag_from_ref": "on", "latest_for_default_branch": ""}
    config = config_from(values)
    assert config["tag_templates"] == ["${parsed_ref.branch}-${commit_info.short_sha}"]
    assert config["latest_for_default_branch"] is False and "branchtag_regex" in config
    assert full_ref("main") == "refs/heads/main" and full_ref("tags/v1") == "refs/tags/v1"
    assert preview(config, "rel-2/x")["tags"] == ["rel-2-x-0123456", "rel-2-x"]
    assert preview(config, "main")["tags"] == ["main-0123456", "main"]  # latest is off
    assert preview(config, "dev")["skip"] == "heads/dev does not match the branch/tag regex heads/(main|rel-.*)"
    assert preview(config, "main")["skip"] is None
    assert preview(config, "tags/v1")["skip"]
    with pytest.raises(Invalid, match="unknown variable"):
        preview({**config, "tag_templates": ["${nope}"]}, "main")


def test_a_notification_form_becomes_the_api_body_of_its_method_and_event():
    from ui.tabs_notifications import body_from

    values = {"event": "repo_image_expiry", "method": "webhook", "title": "", "url": "http://h/x", "email": "e@x",
              "target_kind": "user", "target_name": "bob", "template": "", "ref_regex": "v.*", "level": "High",
              "days": "3"}
    assert body_from(values) == {"event": "repo_image_expiry", "method": "webhook", "title": None,
                                 "config": {"url": "http://h/x"}, "eventConfig": {"days": 3}}
    body = body_from({**values, "event": "repo_push", "method": "quay_notification"})
    assert body["config"] == {"target": {"kind": "user", "name": "bob"}} and body["eventConfig"] == {"ref-regex": "v.*"}
    with pytest.raises(Invalid):
        body_from({**values, "days": "soon"})


def test_the_usage_chart_has_a_bar_for_every_day_of_the_range():
    from ui.tabs_logs import DAY_MS, chart, per_day

    start = 20_000 * DAY_MS
    aggregated = [{"kind": "push_repo", "count": 4, "datetime": "Thu, 04 Oct 2024 00:00:00 -0000"},
                  {"kind": "pull_repo", "count": 2, "datetime": "Thu, 04 Oct 2024 00:00:00 -0000"},
                  {"kind": "push_repo", "count": 1, "datetime": "Sat, 06 Oct 2024 00:00:00 -0000"}]
    days = per_day(aggregated, start, start + 3 * DAY_MS - 1, None)
    assert days == [("2024-10-04", 6), ("2024-10-05", 0), ("2024-10-06", 1)]
    assert per_day(aggregated, start, start + 3 * DAY_MS - 1, "push_repo")[0] == ("2024-10-04", 4)
    bars = chart(days)["bars"]
    assert [b["count"] for b in bars] == [6, 0, 1] and bars[1]["h"] == 0 and bars[0]["h"] > bars[2]["h"] > 0
