"""The security API: ``/api/v1/repository/{ns}/{repo}/manifest/{digest}/security`` (Quay's shape)."""
from __future__ import annotations

from registry.errors import manifest_unknown
from registry.handlers_api import REPO_PATH, RepositoryBase

from . import security

DIGEST = r"(?P<digest>sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})"


class SecurityHandler(RepositoryBase):
    scopes = {"post": "repo:admin"}

    def _manifest(self, action: str):
        repo = self.repository(action)
        manifest = security.manifest_in(repo, self.path_kwargs["digest"])
        if manifest is None:
            raise manifest_unknown(self.path_kwargs["digest"])
        return manifest

    async def get(self, namespace: str, repository: str, digest: str) -> None:
        """The vulnerability scan of a manifest (?vulnerabilities=true for each feature's vulnerabilities);
        an index answers for each of its platform manifests."""
        manifest = self._manifest("read")
        wanted = self.get_argument("vulnerabilities", "false").lower() in ("true", "1", "yes")
        enabled = self.services.config.scanner.enabled
        self.send(security.security(manifest, wanted, enabled))

    async def post(self, namespace: str, repository: str, digest: str) -> None:
        """Scan a manifest again (admin on the repository)."""
        manifest = self._manifest("admin")
        queued = security.rescan(manifest)
        self.send({"status": "queued", "manifests": queued}, 202)


default_handlers = [
    (rf"{REPO_PATH}/manifest/{DIGEST}/security", SecurityHandler),
]
