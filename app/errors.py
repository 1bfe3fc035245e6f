"""Domain errors: what services raise when a request cannot be honoured.

Services never speak HTTP; ``app/http.py`` maps each family below to a status code, once, and
renders it as problem+json. A module subclasses the family that fits and gives its error a
``code`` (the problem type's last segment) and a ``title``:

    class SessionReplaced(Unauthenticated):
        code = "session-replaced"
        title = "This session was ended by a newer login"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """An expected failure. ``detail`` is for humans; ``extra`` joins the problem body."""

    code = "error"
    title = "The request could not be completed"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.errors = dict(errors) if errors else None
        self.headers = dict(headers) if headers else {}
        self.extra = extra


class BadRequest(DomainError):
    code = "bad-request"
    title = "The request is malformed"


class Invalid(DomainError):
    """Input that parses but breaks a rule; ``errors`` maps field names to messages."""

    code = "validation-failed"
    title = "The input is not valid"


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication is required"


class PermissionDenied(DomainError):
    code = "forbidden"
    title = "You are not allowed to do this"


class NotFound(DomainError):
    code = "not-found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "The request conflicts with the current state"


class PayloadTooLarge(DomainError):
    code = "payload-too-large"
    title = "The upload is too large"


class TooManyRequests(DomainError):
    code = "too-many-requests"
    title = "Too many requests; slow down"


class UnsupportedMediaType(DomainError):
    code = "unsupported-media-type"
    title = "The body's media type is not accepted here"


class ValueNotStorable(Invalid):
    """A value the database refused (a number out of range, text it cannot hold): the input's
    fault, so a 422 and never a "try again"."""

    code = "value-not-storable"
    title = "A value cannot be stored"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(
            detail
            or "a value is out of range or cannot be stored (for example an amount too large "
            "for its field); nothing was saved",
            **kwargs,
        )


class UpstreamFailed(DomainError):
    code = "upstream-failed"
    title = "An external service failed"


class UpstreamTimeout(DomainError):
    code = "upstream-timeout"
    title = "An external service did not answer in time"


#: Seconds a 503 tells the client to wait (``Retry-After``) unless its raiser knows better.
RETRY_AFTER_SECONDS = 5


class ServiceUnavailable(DomainError):
    """A dependency is down or refused the work for now: every one carries ``Retry-After``."""

    code = "service-unavailable"
    title = "The service is temporarily unavailable"

    def __init__(
        self, detail: str | None = None, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), **(headers or {})}
        super().__init__(detail, headers=headers, **kwargs)
