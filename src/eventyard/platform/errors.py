"""The control plane's domain errors, each with the HTTP status and error code the API answers."""

from __future__ import annotations


class PlatformError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(PlatformError):
    status = 400
    code = "bad_request"


class Unauthorized(PlatformError):
    status = 401
    code = "unauthorized"


class NotFound(PlatformError):
    status = 404
    code = "not_found"


class Conflict(PlatformError):
    status = 409
    code = "conflict"


class PlanLimit(PlatformError):
    """The request is well formed but goes beyond what the add-on's plan allows."""

    status = 422
    code = "plan_limit"


class ClusterError(PlatformError):
    """The Kafka cluster refused or failed an operation the request needed."""

    status = 502
    code = "cluster_error"
