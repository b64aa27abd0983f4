"""SATOSA's ``InternalData`` and ``AuthenticationInformation``, built directly.

Both are ``UserDict`` subclasses whose constructors pass the new object to ``UserDict.__init__``
as its own initial contents: an empty ``MutableMapping.update`` with its ABC checks, then
one ``__setattr__`` -> ``__setitem__`` -> deprecated-name lookup per field.  A login builds
three of the one and two of the other.  These builders give the same objects (the same
``data`` dict, keys in the same order; :mod:`tests.login.test_internal` compares them with
SATOSA's constructors) by setting ``data`` once.  The field names are SATOSA's current ones,
so its deprecated-name mapping never applies to them.
"""

from __future__ import annotations

from typing import Any

from satosa.internal import AuthenticationInformation, InternalData


def auth_information(auth_class_ref: str | None = None, timestamp: str | None = None, issuer: str | None = None,
                     authority: Any = None) -> AuthenticationInformation:
    """``AuthenticationInformation(auth_class_ref=..., timestamp=..., issuer=..., authority=...)``."""
    info = AuthenticationInformation.__new__(AuthenticationInformation)
    info.data = {"auth_class_ref": auth_class_ref, "timestamp": timestamp, "issuer": issuer, "authority": authority}
    return info


def internal_data(auth_info: AuthenticationInformation | None = None, requester: str | None = None,
                  requester_name: list[dict[str, str]] | None = None, subject_id: str | None = None,
                  subject_type: str | None = None, attributes: dict[str, Any] | None = None) -> InternalData:
    """``InternalData(...)`` with the same keywords and defaults (an ``auth_info`` of ``None`` is an empty one)."""
    internal = InternalData.__new__(InternalData)
    internal.data = {
        "auth_info": auth_info if auth_info is not None else auth_information(),
        "requester": requester,
        "requester_name": requester_name if requester_name is not None else [{"text": requester, "lang": "en"}],
        "subject_id": subject_id,
        "subject_type": subject_type,
        "attributes": attributes if attributes is not None else {},
    }
    return internal
