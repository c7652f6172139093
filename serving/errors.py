"""One error type for the whole server and one table mapping it onto HTTP and gRPC.

The core raises `ServingError(code, message)` with a canonical gRPC code name; the REST and gRPC
adapters translate it through `CODES`, so both protocols always agree on what a failure means.
"""
from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class Code:
    """How one canonical error code appears on each protocol."""
    http_status: int
    grpc_status: grpc.StatusCode


CODES: dict[str, Code] = {
    "INVALID_ARGUMENT": Code(400, grpc.StatusCode.INVALID_ARGUMENT),
    "NOT_FOUND": Code(404, grpc.StatusCode.NOT_FOUND),
    "ALREADY_EXISTS": Code(409, grpc.StatusCode.ALREADY_EXISTS),
    "FAILED_PRECONDITION": Code(412, grpc.StatusCode.FAILED_PRECONDITION),
    "RESOURCE_EXHAUSTED": Code(413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    "UNAUTHENTICATED": Code(401, grpc.StatusCode.UNAUTHENTICATED),
    "PERMISSION_DENIED": Code(403, grpc.StatusCode.PERMISSION_DENIED),
    "UNIMPLEMENTED": Code(501, grpc.StatusCode.UNIMPLEMENTED),
    "UNAVAILABLE": Code(503, grpc.StatusCode.UNAVAILABLE),
    "INTERNAL": Code(500, grpc.StatusCode.INTERNAL),
}


class ServingError(Exception):
    """A request failed for a reason the client should see (bad input, unknown model, overload)."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.version: int | str = ""     # the model version involved, when one was resolved

    @property
    def http_status(self) -> int:
        return CODES[self.code].http_status

    @property
    def grpc_status(self) -> grpc.StatusCode:
        return CODES[self.code].grpc_status

    @property
    def outcome(self) -> str:
        """The `outcome` label value of serving_requests_total for this error."""
        return self.code.lower()

    def __repr__(self) -> str:
        return f"ServingError({self.code!r}, {self.message!r})"


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def unavailable(message: str) -> ServingError:
    return ServingError("UNAVAILABLE", message)


def too_large(message: str) -> ServingError:
    return ServingError("RESOURCE_EXHAUSTED", message)
