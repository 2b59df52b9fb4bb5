"""The $build credential: the build's repository and layer cache while it runs; after it completes, the
layer cache alone and only for a while (the worker publishes the cache then); nothing once it ends otherwise."""
from accounts.models import Account
from builder import builds
from builder.models import COMPLETE, ERROR, RUNNING, Build
from registry.models import Repository
from slipway.db import now_ms


def test_the_credential_of_a_completed_build_writes_only_the_layer_cache_for_a_while(db):
    owner = Account.create(name="owner")
    repo = Repository.create(namespace=owner, name="app")
    cache = Repository.create(namespace=owner, name=f"app/{builds.CACHE_SUFFIX}")
    build = Build.create(uuid="c0000000-0000-0000-0000-000000000000", repository=repo, phase=RUNNING[0])
    secret = builds.issue_credential(build)
    running = builds.identity_for_build_secret(secret)
    assert set(running.repositories) == {repo.id, cache.id}

    Build.update(phase=COMPLETE, completed_at=now_ms()).where(Build.id == build.id).execute()
    assert builds.identity_for_build_secret(secret).repositories == (cache.id,)
    Build.update(completed_at=now_ms() - builds.CACHE_PUBLISH_MS - 1).where(Build.id == build.id).execute()
    assert builds.identity_for_build_secret(secret) is None  # too long ago

    Build.update(phase=ERROR, completed_at=now_ms()).where(Build.id == build.id).execute()
    assert builds.identity_for_build_secret(secret) is None  # a failed build publishes nothing
    Build.update(phase=COMPLETE).where(Build.id == build.id).execute()
    builds.revoke_credential(build)
    assert builds.identity_for_build_secret(secret) is None
    assert builds.identity_for_build_secret("not-a-secret") is None
