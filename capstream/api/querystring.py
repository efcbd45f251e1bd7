"""Query strings are checked like bodies: a parameter the route does not take is a 422."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from capstream.api.errors import FieldError, InvalidError

_KNOWN: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _known(route: APIRoute) -> frozenset[str]:
    names = _KNOWN.get(id(route))
    if names is None:
        names = _KNOWN[id(route)] = frozenset(_query_names(route.dependant))
    return names


async def refuse_unknown_query(request: Request) -> None:
    """422 naming each query parameter the route does not take (a misspelt or unsupported
    filter would otherwise be ignored silently, and the answer look filtered when it is not)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _known(route)
    unknown = sorted({k for k in request.query_params if k not in known})
    if not unknown:
        return
    takes = ", ".join(sorted(known)) if known else "no query parameters"
    fields = [
        FieldError(field=k, message=f"unknown query parameter {k!r}; this route takes {takes}")
        for k in unknown
    ]
    raise InvalidError("; ".join(f.message for f in fields), fields=fields)
