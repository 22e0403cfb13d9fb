"""Error categories shared by every domain.

Domains raise their own subclasses (``ModelNotFound``, ``JobNotFound``...); the HTTP layer
maps the category to a status code, so no domain module needs to know about HTTP.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error meant to reach a client as a readable message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ServiceError, ValueError):
    """The request is malformed or asks for something impossible (400)."""


class NotFound(ServiceError):
    """A named resource does not exist (404)."""


class Forbidden(ServiceError):
    """The request is understood but not allowed by this server's configuration (403)."""


class Conflict(ServiceError):
    """The request conflicts with the current state (409)."""


class Unavailable(ServiceError):
    """Temporarily cannot serve: overloaded, loading, upstream down (503)."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(ServiceError):
    """An upstream service answered with an error (502)."""


class PathNotAllowed(InvalidRequest):
    """A path in a request resolves outside the configured directories."""


class ModelNotFound(NotFound):
    pass


class ModelAlreadyLoaded(Conflict):
    pass


class EngineOverloaded(Unavailable):
    pass


class ModelUnloaded(Unavailable):
    pass


class GenerationFailed(ServiceError):
    """The engine failed while generating (500; logged with the request id)."""
