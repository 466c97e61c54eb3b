"""Reading the console's query strings and forms with the admin API's rules: the same limits
and grammar (``proxy.admin.common``), and the action bodies validated by the admin API's own
models (``proxy.admin.bodies``), so a reason the API refuses is refused here too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from proxy.admin.common import invalid_fields
from proxy.admin.errors import AdminCode, AdminError

M = TypeVar("M", bound=BaseModel)

DAY = 86400


def choice(request: web.Request, key: str, allowed: tuple[str, ...], default: str = "") -> str:
    value = request.query.get(key, default)
    if value not in allowed:
        raise AdminError(
            AdminCode.BAD_REQUEST, f"{key}: one of {', '.join(a or '(any)' for a in allowed)}"
        )
    return value


def text(form: Mapping[str, Any], key: str) -> str | None:
    value = str(form.get(key, "")).strip()
    return value or None


def days(form: Mapping[str, Any], key: str) -> float | None:
    """A number of days from a form field, as seconds (empty: no end)."""
    value = text(form, key)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise AdminError(AdminCode.INVALID_FIELD, f"{key}: a number of days") from exc
    if not 0 < number <= 366 or number != number:
        raise AdminError(AdminCode.INVALID_FIELD, f"{key}: from more than 0 to 366 days")
    return number * DAY


def validated(model: type[M], data: dict[str, Any]) -> M:
    """``data`` through the admin API's body model; its refusal names each bad field."""
    try:
        return model.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        raise invalid_fields(exc) from exc
