"""Each API family maps the domain error kinds to its wire format in one place (in-process, no server)."""
from __future__ import annotations

import pytest

from registry import errors
from slipway import api
from slipway.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, TooLarge, TooMany, Unauthenticated


@pytest.mark.parametrize("error, status, kind", [
    (Invalid("x"), 400, "invalid_request"), (Unauthenticated("x"), 401, "invalid_token"),
    (Forbidden("x"), 403, "insufficient_scope"), (NotFound("x"), 404, "not_found"), (Conflict("x"), 409, "conflict"),
    (TooLarge("x"), 413, "request_too_large"), (TooMany("x"), 429, "too_many_requests"),
    (DomainError("x"), 400, "invalid_request"),
    # the registry's refined kinds are answered on /api/v1 as the kinds they refine
    (errors.NameInvalid("x"), 400, "invalid_request"), (errors.ManifestUnknown("x"), 404, "not_found"),
    (errors.InUse("x"), 409, "conflict"), (errors.Denied("x"), 403, "insufficient_scope"),
])
def test_quay_mapping(error, status, kind):
    assert api.quay_error(error) == (status, kind)


@pytest.mark.parametrize("error, code, status", [
    (errors.NameInvalid("x"), "NAME_INVALID", 400), (errors.name_unknown("a/b"), "NAME_UNKNOWN", 404),
    (errors.manifest_unknown("t"), "MANIFEST_UNKNOWN", 404), (errors.blob_unknown("sha256:0"), "BLOB_UNKNOWN", 404),
    (errors.upload_unknown("u"), "BLOB_UPLOAD_UNKNOWN", 404), (errors.DigestInvalid("x"), "DIGEST_INVALID", 400),
    (errors.ManifestInvalid("x"), "MANIFEST_INVALID", 400),
    (errors.ManifestBlobUnknown("x"), "MANIFEST_BLOB_UNKNOWN", 400),
    (errors.UploadLocked("x"), "BLOB_UPLOAD_INVALID", 409), (errors.InUse("x"), "UNSUPPORTED", 405),
    (errors.Denied("x"), "DENIED", 403), (Forbidden("x"), "DENIED", 403), (Unauthenticated("x"), "UNAUTHORIZED", 401),
    (NotFound("x"), "NAME_UNKNOWN", 404), (TooMany("x"), "TOO_MANY_REQUESTS", 429),
])
def test_oci_mapping(error, code, status):
    wire = errors.oci_error(error)
    assert (wire.code, wire.status, wire.message) == (code, status, error.message)


def test_oci_detail_is_kept():
    wire = errors.oci_error(errors.name_unknown("a/b"))
    assert wire.body() == {"errors": [{"code": "NAME_UNKNOWN", "message": "repository a/b is not known to the registry",
                                       "detail": {"name": "a/b"}}]}
