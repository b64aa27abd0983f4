"""Hash tags: keys that travel together land in one Redis Cluster slot.

Redis Cluster hashes only the part of a key inside its first ``{...}`` (the hash tag) when
there is one.  Keys a caller reads or writes in one round trip (a batch, ``get_many``, a
``delete`` of several keys) must share a tag, or a cluster cannot serve them in one step;
:class:`~broker.store.cluster.ClusterStore` refuses a batch spanning slots (:class:`CrossSlot`).

A login's keys share one *login tag* (8 hex digits): the broker session's keys, its upstream
index, the authorization code, the grant, its refresh and access tokens' keys.  So that a
key can be built from the value a request presents (a code, a refresh token, a ``gid`` or
``jti`` claim, a session cookie), those values carry the tag in front: ``<tag>~<random>``
(``~``: URL- and cookie-safe, not in ``token_urlsafe``'s alphabet, and not the ``.`` that tells
a JWT from an opaque token).
A value without one (issued before tags, or malformed) gives the key it always had,
untagged: on a single Redis nothing changes for it.  The tag is random or derived from a
hash (:func:`tag_of_hash`), never from anything secret.
"""

from __future__ import annotations

import secrets

from broker.store.base import StoreError

#: Hex digits in a login tag.
TAG_LENGTH = 8
_HEX = frozenset("0123456789abcdef")
SEPARATOR = "~"


class CrossSlot(StoreError):
    """A programming error: keys sent together that a cluster holds in different slots.

    A :class:`StoreError` all the same: raised during a request, it gets the answer a store
    that cannot serve gets (503 ``temporarily_unavailable``, the login path's error page with
    the correlation id), never an unhandled 500.  Who raises it logs it at ERROR first
    (:func:`broker.store.cluster.slot_of`), as callers that ride out a store outage (the rate
    limits fail open, background threads retry) may log a StoreError at a lower level or not
    at all.
    """


def new_tag() -> str:
    """A fresh login tag."""
    return secrets.token_hex(TAG_LENGTH // 2)


def tag_of_hash(digest: str) -> str:
    """The tag derived from a hex digest (so that a key found by that digest shares it)."""
    return digest[:TAG_LENGTH]


def with_tag(tag: str, value: str) -> str:
    """``value`` carrying ``tag`` (``<tag>~<value>``), or ``value`` when there is no tag."""
    return f"{tag}{SEPARATOR}{value}" if tag else value


def tag_of(value: str | None) -> str:
    """The tag a presented value carries, or ``""`` (none, or not well-formed)."""
    if not value:
        return ""
    head, dot, _ = value.partition(SEPARATOR)
    return head if dot and len(head) == TAG_LENGTH and set(head) <= _HEX else ""


def key(prefix: str, tag: str, rest: str) -> str:
    """``prefix{tag}rest``, or ``prefix + rest`` without a tag (the key such values always had)."""
    return f"{prefix}{{{tag}}}{rest}" if tag else prefix + rest


def key_tag(full_key: str) -> str | None:
    """The hash tag Redis Cluster would hash for ``full_key`` (``None``: the whole key)."""
    start = full_key.find("{")
    if start < 0:
        return None
    end = full_key.find("}", start + 1)
    if end <= start + 1:
        return None
    return full_key[start + 1:end]
