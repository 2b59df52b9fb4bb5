"""Registry errors in the OCI distribution format: {"errors": [{"code", "message", "detail"}]}."""
from __future__ import annotations

STATUS = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOO_MANY_REQUESTS": 429,
}


class RegistryError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None, detail=None, headers: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status or STATUS[code]
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}


def blob_unknown(digest: str) -> RegistryError:
    return RegistryError("BLOB_UNKNOWN", "blob unknown to registry", detail={"digest": digest})


def name_unknown(name: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", f"repository {name} is not known to the registry", detail={"name": name})


def manifest_unknown(reference: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {reference}", detail={"reference": reference})


def upload_unknown(upload_id: str) -> RegistryError:
    return RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", detail={"uuid": upload_id})
