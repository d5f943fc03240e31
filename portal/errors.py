"""The portal's refusals beyond the core's (tollway/errors.py), each with its gRPC status; the web pages
map the same classes to HTTP statuses (portal/web/app.py)."""

from __future__ import annotations

import grpc

from tollway.errors import TollwayError

# The one answer to a wrong password and an unknown email alike (no account oracle).
WRONG_CREDENTIALS = "email or password is incorrect"


class Unauthenticated(TollwayError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(TollwayError):
    code = grpc.StatusCode.PERMISSION_DENIED


class TooManyAttempts(TollwayError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, retry_after_seconds: int) -> None:
        minutes = max(1, (retry_after_seconds + 59) // 60)
        super().__init__(f"too many failed sign-in attempts; try again in {minutes} minute(s)")
        self.retry_after_seconds = retry_after_seconds
