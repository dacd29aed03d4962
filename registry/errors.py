"""The registry's errors: one class per spec error code, with its HTTP status.

    RegistryError
     +-- BlobUnknown           BLOB_UNKNOWN            404
     +-- BlobUploadInvalid     BLOB_UPLOAD_INVALID     400
     +-- BlobUploadUnknown     BLOB_UPLOAD_UNKNOWN     404
     +-- DigestInvalid         DIGEST_INVALID          400
     +-- ManifestBlobUnknown   MANIFEST_BLOB_UNKNOWN   400
     +-- ManifestInvalid       MANIFEST_INVALID        400
     +-- ManifestUnknown       MANIFEST_UNKNOWN        404
     +-- NameInvalid           NAME_INVALID            400
     +-- NameUnknown           NAME_UNKNOWN            404
     +-- SizeInvalid           SIZE_INVALID            400
     |    +-- ManifestTooLarge SIZE_INVALID            413
     |    +-- QueryTooLong     SIZE_INVALID            414
     +-- TagInvalid            TAG_INVALID             400
     +-- RangeInvalid          RANGE_INVALID           416
     +-- PaginationInvalid     PAGINATION_NUMBER_INVALID 400
     +-- Unsupported           UNSUPPORTED             405 (404 for an unknown route)
     |    +-- BodyTypeUnsupported UNSUPPORTED          415 (an /api/v1 body not JSON)
     +-- Unavailable           UNAVAILABLE             503
     +-- InsufficientStorage   INSUFFICIENT_STORAGE    507
     +-- Unauthorized          UNAUTHORIZED            401
     +-- Denied                DENIED                  403
     |    +-- TagImmutable     DENIED                  409 (an immutable-tag rule)
     +-- TooManyRequests       TOOMANYREQUESTS         429
     +-- Invalid               INVALID                 400  (account API only)
     +-- NotFound              NOT_FOUND               404  (account API only)
     +-- Conflict              CONFLICT                409  (account API only)

Services raise these; one handler in registry.api renders them as the spec's JSON body.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    message: ClassVar[str] = "unknown error"

    def __init__(
        self,
        detail: Any = None,
        *,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.detail = detail
        self.text = message or self.message
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.text}
        if self.detail is not None:
            body["detail"] = self.detail
        return body


class BlobUnknown(RegistryError):
    code, status, message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class BlobUploadUnknown(RegistryError):
    code, status, message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, message = (
        "DIGEST_INVALID",
        400,
        "provided digest did not match uploaded content",
    )


class ManifestBlobUnknown(RegistryError):
    code, status, message = (
        "MANIFEST_BLOB_UNKNOWN",
        400,
        "manifest references a blob unknown to the repository",
    )


class ManifestInvalid(RegistryError):
    code, status, message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, message = "MANIFEST_UNKNOWN", 404, "manifest unknown"


class NameInvalid(RegistryError):
    code, status, message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, message = "SIZE_INVALID", 400, "provided length did not match content length"


class ManifestTooLarge(SizeInvalid):
    status, message = 413, "manifest too large"


class QueryTooLong(SizeInvalid):
    status, message = 414, "query string too long"


class TagInvalid(RegistryError):
    code, status, message = "TAG_INVALID", 400, "manifest tag did not match URI"


class RangeInvalid(RegistryError):
    code, status, message = "RANGE_INVALID", 416, "invalid content range"


class PaginationInvalid(RegistryError):
    code, status, message = "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"


class Unsupported(RegistryError):
    code, status, message = "UNSUPPORTED", 405, "the operation is unsupported"


class RouteUnknown(Unsupported):
    status, message = 404, "no such endpoint"


class BodyTypeUnsupported(Unsupported):
    status, message = 415, "the request body must be application/json"


class Unavailable(RegistryError):
    code, status, message = "UNAVAILABLE", 503, "service unavailable"


class InsufficientStorage(RegistryError):
    code, status, message = "INSUFFICIENT_STORAGE", 507, "the blob store is full"


class Unauthorized(RegistryError):
    code, status, message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, message = "DENIED", 403, "requested access to the resource is denied"


class TagImmutable(Denied):
    """A push or delete that would move or remove a tag an immutable-tag rule covers:
    the caller may, the rule does not (409, as the state of the tag is the conflict)."""

    status, message = 409, "the tag is immutable"


class TooManyRequests(RegistryError):
    code, status, message = "TOOMANYREQUESTS", 429, "too many requests"


# The account API (/api/v1/) is ours, not the distribution spec's; it answers in the same
# format with these codes.


class Invalid(RegistryError):
    code, status, message = "INVALID", 400, "invalid request"


class NotFound(RegistryError):
    code, status, message = "NOT_FOUND", 404, "not found"


class Conflict(RegistryError):
    code, status, message = "CONFLICT", 409, "already exists"
