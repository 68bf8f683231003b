"""Errors as TF Serving reports them: a status code mapped to HTTP, and ``{"error": msg}``."""

from __future__ import annotations

# TF Serving's http_server.cc: absl status code -> HTTP status
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
               "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409,
               "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429,
               "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
               "CANCELLED": 499, "UNKNOWN": 500, "INTERNAL": 500, "DATA_LOSS": 500,
               # not a TF status: the HTTP layer's answer to an oversized body
               "PAYLOAD_TOO_LARGE": 413}


class ServingError(Exception):
    """A request failed with a TF status code; the message is what the client sees."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def invalid_argument(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def unimplemented(message: str) -> ServingError:
    return ServingError("UNIMPLEMENTED", message)
