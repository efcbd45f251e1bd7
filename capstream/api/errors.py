"""Errors of the Policy API and the JSON shape every error response has."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from capstream.errors import CapstreamError


class FieldError(BaseModel):
    """One invalid field: where (dotted path into the body or query) and what is wrong."""

    field: str
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx answer: a stable ``code``, a readable message, field errors."""

    code: str
    message: str
    fields: list[FieldError] = []
    cta: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {...}}``: what every failed request gets back."""

    error: ErrorBody


class ApiError(CapstreamError):
    """A request the API refuses; ``status`` and ``code`` become the JSON error."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self, message: str, *, fields: list[FieldError] | None = None, cta: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or []
        self.cta = cta

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        err = ErrorBody(code=self.code, message=self.message, fields=self.fields, cta=self.cta)
        return ErrorResponse(error=err).model_dump(exclude_none=True)


class UnauthorizedError(ApiError):
    """No key, or a key that matches nothing."""

    status = 401
    code = "unauthorized"


class ForbiddenError(ApiError):
    """A valid key that may not do this (an account key on an admin route)."""

    status = 403
    code = "forbidden"


class NotFoundError(ApiError):
    """Nothing here for this caller: missing, or another tenant's (never told apart)."""

    status = 404
    code = "not_found"


class ConflictError(ApiError):
    """The resource exists already."""

    status = 409
    code = "conflict"


class InvalidError(ApiError):
    """The body is well-formed but breaks a rule; ``fields`` name what to fix."""

    status = 422
    code = "invalid"


class UpgradeRequiredError(ApiError):
    """A paid-plan feature asked for on the free plan."""

    status = 402
    code = "upgrade_required"


class UnavailableError(ApiError):
    """Kafka or ClickHouse did not answer in time; retrying later is safe."""

    status = 503
    code = "unavailable"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error statuses a route can answer."""
    text = {
        401: "Missing or unknown API key",
        402: "Needs a paid plan",
        403: "This key may not do that",
        404: "Not found (or not yours)",
        409: "Already exists",
        422: "InvalidError request; `fields` names what to fix",
        503: "Kafka or ClickHouse unavailable; retry later",
    }
    return {s: {"model": ErrorResponse, "description": text[s]} for s in statuses}
