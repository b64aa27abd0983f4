"""Finding the endpoint of a request path: one dictionary read.

Plugins register endpoints as SATOSA does, ``(regex, handler)`` pairs.  Every
endpoint of ours is one literal path (``^token$``), so the router indexes those
by path and scans regexes only for the rest (a stock micro-service's), keeping
the cost of routing flat in the number of IdPs.

Each endpoint has an owner ``(kind, name)``: ``("backend", "saml")``,
``("frontend", "oidc")``, ``("micro_service", ...)`` or ``("broker", page)``.  The
proxy sets SATOSA's ``context.target_backend`` (or ``target_frontend``,
``target_micro_service``) from it, as SATOSA's router does, so a backend's callback
says which backend answered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

Handler = Callable[..., Any]
Owner = tuple[str, str]

_LITERAL = re.compile(r"^\^([A-Za-z0-9_./\\-]*)\$?\Z")


class Router:
    def __init__(self) -> None:
        self._exact: dict[str, tuple[Owner, Handler]] = {}
        self._patterns: list[tuple[re.Pattern[str], Owner, Handler]] = []

    def add(self, path: str, handler: Handler, *, owner: Owner = ("broker", "")) -> None:
        """Route the literal ``path`` (no leading slash) to ``handler``."""
        if path in self._exact:
            raise ValueError(f"two endpoints at /{path}: {self._exact[path][0]} and {owner}")
        self._exact[path] = (owner, handler)

    def add_endpoints(self, endpoints: Iterable[tuple[str, Handler]], *, owner: Owner) -> None:
        """Add a plugin's SATOSA-style ``(regex, handler)`` endpoints."""
        for regex, handler in endpoints:
            match = _LITERAL.match(regex)
            if match:
                self.add(match.group(1).replace("\\", ""), handler, owner=owner)
            else:
                self._patterns.append((re.compile(regex), owner, handler))

    def wrap(self, path: str, wrapper: Callable[[Handler], Handler]) -> bool:
        """Replace the handler at the literal ``path`` by ``wrapper(handler)`` (metrics time endpoints
        this way); ``False`` if no endpoint is there."""
        hit = self._exact.get(path)
        if hit is None:
            return False
        self._exact[path] = (hit[0], wrapper(hit[1]))
        return True

    def find(self, path: str) -> tuple[Owner, Handler] | None:
        """``((kind, name), handler)`` for ``path``, or ``None``."""
        hit = self._exact.get(path)
        if hit is not None:
            return hit
        for pattern, owner, handler in self._patterns:
            if pattern.match(path):
                return owner, handler
        return None
