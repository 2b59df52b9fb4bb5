"""Registry errors: the kinds the registry's logic raises, and the one place they become OCI errors.

The logic (names, digests, manifests, content, blobs, repositories, tags) raises
``slipway.errors`` kinds, refined here where the OCI format tells them apart
(``NameInvalid`` is an ``Invalid``, ``ManifestUnknown`` a ``NotFound``): no HTTP
status, no wire code. ``oci_error`` is the /v2 family's mapping to the OCI
format ``{"errors": [{"code", "message", "detail"}]}`` (``RegistryHandler.write_error``
renders it); the /api/v1 family answers the same kinds as the kinds they refine
(``slipway.api.QUAY_ERRORS``). ``RegistryError`` is the wire error itself, which
the /v2 handlers also raise for what only HTTP knows (a challenge, a range).
"""
from __future__ import annotations

from slipway.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, TooLarge, TooMany, Unauthenticated

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
    """An answer in the OCI format: code, message, detail, and the HTTP status and headers to send it with."""

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


# -- what the registry's logic raises ----------------------------------------------------------------------

class NameInvalid(Invalid):
    """A repository name outside the grammar."""


class NameUnknown(NotFound):
    """No such repository (or namespace)."""


class ManifestUnknown(NotFound):
    """No such manifest or tag in the repository."""


class BlobUnknown(NotFound):
    """No such blob in the repository."""


class UploadUnknown(NotFound):
    """No such upload session."""


class DigestInvalid(Invalid):
    """A malformed digest, or content that does not match its digest."""


class ManifestInvalid(Invalid):
    """A manifest (or tag name) the registry does not accept."""


class ManifestBlobUnknown(Invalid):
    """A manifest names a blob or child manifest the repository does not hold."""


class UploadLocked(Conflict):
    """Another request is writing to the upload session."""


class InUse(Conflict):
    """A deletion refused because an alive tag still needs the thing."""


class Denied(Forbidden):
    """A registry rule refuses the caller (creating a build cache, writing a read-only repository)."""


def blob_unknown(digest: str) -> BlobUnknown:
    return BlobUnknown("blob unknown to registry", detail={"digest": digest})


def name_unknown(name: str) -> NameUnknown:
    return NameUnknown(f"repository {name} is not known to the registry", detail={"name": name})


def manifest_unknown(reference: str) -> ManifestUnknown:
    return ManifestUnknown(f"manifest unknown: {reference}", detail={"reference": reference})


def upload_unknown(upload_id: str) -> UploadUnknown:
    return UploadUnknown("blob upload unknown to registry", detail={"uuid": upload_id})


# -- the /v2 family's mapping ----------------------------------------------------------------------------

#: (OCI code, HTTP status) for each kind; a kind not listed is answered as the nearest kind it refines.
OCI_ERRORS: dict[type, tuple[str, int]] = {
    NameInvalid: ("NAME_INVALID", 400),
    NameUnknown: ("NAME_UNKNOWN", 404),
    ManifestUnknown: ("MANIFEST_UNKNOWN", 404),
    BlobUnknown: ("BLOB_UNKNOWN", 404),
    UploadUnknown: ("BLOB_UPLOAD_UNKNOWN", 404),
    DigestInvalid: ("DIGEST_INVALID", 400),
    ManifestInvalid: ("MANIFEST_INVALID", 400),
    ManifestBlobUnknown: ("MANIFEST_BLOB_UNKNOWN", 400),
    UploadLocked: ("BLOB_UPLOAD_INVALID", 409),
    # 405 is the spec's answer for a deletion the registry does not allow.
    InUse: ("UNSUPPORTED", 405),
    Denied: ("DENIED", 403),
    # Kinds raised by other packages' logic.
    Unauthenticated: ("UNAUTHORIZED", 401),
    Forbidden: ("DENIED", 403),
    NotFound: ("NAME_UNKNOWN", 404),
    TooLarge: ("SIZE_INVALID", 413),
    TooMany: ("TOO_MANY_REQUESTS", 429),
    DomainError: ("UNSUPPORTED", 400),
}


def oci_error(exc: DomainError) -> RegistryError:
    """The OCI answer to a domain error: the entry of its nearest kind in ``OCI_ERRORS``."""
    for cls in type(exc).__mro__:
        if cls in OCI_ERRORS:
            code, status = OCI_ERRORS[cls]
            return RegistryError(code, exc.message, status=status, detail=exc.detail)
    raise TypeError(f"not a domain error: {exc!r}")
