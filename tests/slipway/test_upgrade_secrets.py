"""Upgrading a database an older version left with plaintext secrets encrypts and redacts them in place."""
import json

from slipway import crypto, migrate
from slipway import db as slipway_db
from slipway.app import migrations
from tests.conftest import new_database_url

SOURCE = "https://gituser:gitpass-OLD1@git.example.com/app.git"
HOOK = "https://hooks.example.com/in?token=hooktoken-OLD2"
ARCHIVE = "https://arc:arcpass-OLD3@files.example.com/ctx.tar.gz?X-Amz-Signature=presigned-OLD4"
ARG = "buildarg-OLD5"
PLAINTEXT = ["gitpass-OLD1", "hooktoken-OLD2", "arcpass-OLD3", "presigned-OLD4", ARG]


def test_plaintext_secrets_are_encrypted_and_redacted_on_upgrade(tmp_path):
    crypto.configure("upgrade-test-secret")
    database = slipway_db.bind(slipway_db.open_database(new_database_url(tmp_path)))
    # The schema as the release before encryption left it (every step of accounts and registry).
    migrate.migrate(migrations(), up_to={"slipway": 1, "accounts": 99, "registry": 99, "builder": 3, "triggers": 3,
                           "webhooks": 2})
    from accounts.migrations import AccountV1, LogEntryV2
    from builder.migrations import BuildV1
    from registry.migrations import RepositoryV1
    from slipway.migrations import EventV1
    from triggers.migrations import TriggerV1
    from webhooks.migrations import AttemptV1, DeliveryV1, NotificationV1

    user = AccountV1.create(name="olduser")
    repo = RepositoryV1.create(namespace=user, name="app")
    TriggerV1.create(uuid="t" * 36, repository=repo, build_source=SOURCE, build_args=json.dumps({"TOKEN": ARG}))
    metadata = {"commit": "a" * 40, "git_url": SOURCE}
    BuildV1.create(uuid="b" * 36, repository=repo, build_args=json.dumps({"KEY": ARG}), archive_url=ARCHIVE,
                   source="archive_url", trigger_metadata=json.dumps(metadata))
    EventV1.create(kind="build_queued", repository_id=repo.id, payload=json.dumps({"trigger_metadata": metadata}))
    LogEntryV2.create(kind="setup_repo_trigger", metadata=json.dumps({"config": {"build_source": SOURCE}}))
    notification = NotificationV1.create(uuid="n" * 36, repository=repo, event="repo_push", method="webhook",
                                         config=json.dumps({"url": HOOK}))
    error = "ConnectionError: Max retries exceeded with url: /in?token=hooktoken-OLD2"
    delivery = DeliveryV1.create(notification=notification, payload=json.dumps({"trigger_metadata": metadata}),
                                 last_error=error)
    AttemptV1.create(delivery=delivery, error=error)

    applied = migrate.migrate(migrations())
    assert {"builder:4:encrypt_secrets", "triggers:4:encrypt_secrets", "webhooks:3:encrypt_secrets"} <= set(applied)

    # Nothing readable is left in any of those tables...
    rows = []
    for table in ("trigger", "build", "event", "log_entry", "notification", "notification_delivery",
                  "notification_attempt"):
        rows += database.execute_sql(f'SELECT * FROM "{table}"').fetchall()
    dump = repr(rows)
    for secret in PLAINTEXT:
        assert secret not in dump, secret
    # ... what is needed again decrypts to what was stored ...
    from builder.models import Build
    from triggers.models import Trigger
    from webhooks.models import Notification

    trigger = Trigger.get()
    assert trigger.build_source == SOURCE and json.loads(trigger.build_args) == {"TOKEN": ARG}
    build = Build.get()
    assert build.archive_url == ARCHIVE and json.loads(build.build_args) == {"KEY": ARG}
    assert json.loads(Notification.get().config) == {"url": HOOK}
    # ... and what is only shown is redacted.
    assert json.loads(build.trigger_metadata)["git_url"] == "https://***@git.example.com/app.git"
    audit = json.loads(database.execute_sql("SELECT metadata FROM log_entry").fetchone()[0])
    assert audit["config"]["build_source"] == "https://***@git.example.com/app.git"
    assert database.execute_sql("SELECT error FROM notification_attempt").fetchone()[0] == \
        "ConnectionError: Max retries exceeded with url: /in?token=***"
    database.close()
