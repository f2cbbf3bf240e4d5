"""Domain errors: raise them anywhere in the server; `backend.main` maps them to 4xx JSON."""
from __future__ import annotations


class DomainError(Exception):
    status_code = 400

    def __init__(self, detail: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.headers = headers


class BadRequest(DomainError):
    status_code = 400


class Unauthorized(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class PayloadTooLarge(DomainError):
    status_code = 413


class Unprocessable(DomainError):
    status_code = 422
