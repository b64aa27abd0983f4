"""How long each artefact of the provider lives (all in seconds)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Lifetimes:
    """Bounded lifetimes: every code, token and record expires.

    :ivar code: authorization code (RFC 6749 §4.1.2 recommends at most 10 minutes).
    :ivar access_token: JWT access token (short: services verify it offline).
    :ivar id_token: ID token.
    :ivar refresh_token: idle lifetime of one refresh token (each use rotates it).
    :ivar refresh_family: absolute lifetime of a refresh-token family (the grant):
        after this, the user signs in again however often the client refreshed.
    :ivar leeway: clock skew tolerated on ``exp``/``nbf``/``iat`` of what we receive.
    :ivar client_assertion: the longest ``exp - now`` accepted in a client assertion
        (RFC 7523): bounds how long its ``jti`` must be remembered.
    """

    code: int = 60
    access_token: int = 300
    id_token: int = 300
    refresh_token: int = 8 * 3600
    refresh_family: int = 24 * 3600
    leeway: int = 30
    client_assertion: int = 3600

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < (0 if field.name == "leeway" else 1):
                raise ValueError(f"lifetimes.{field.name}: expected a positive number of seconds")
        if self.code > 600:
            raise ValueError("lifetimes.code: at most 600 seconds (RFC 6749 §4.1.2)")
        if self.refresh_token > self.refresh_family:
            raise ValueError("lifetimes.refresh_token: must not exceed lifetimes.refresh_family")

    @property
    def longest_signed(self) -> int:
        """The longest lifetime of a signed token (what key retention must cover)."""
        return max(self.access_token, self.id_token)

    @classmethod
    def coerce(cls, value: Lifetimes | Mapping[str, Any] | None) -> Lifetimes:
        if value is None:
            return cls()
        if isinstance(value, Lifetimes):
            return value
        return cls(**dict(value))
