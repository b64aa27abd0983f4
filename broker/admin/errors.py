"""What an admin operation answers when it refuses: one exception per HTTP status.

:mod:`broker.admin.operations` raises these; the API (:mod:`broker.admin.api`) turns
them into ``{"error", "description", "correlation_id", "problems"?}`` with their
``status``, and the console into a page.  Descriptions say what was expected and
never carry a secret, a token or a document's content.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class AdminError(Exception):
    """An admin operation refused; ``status`` and ``code`` say how, ``description`` why."""

    status = 400
    code = "invalid_request"
    #: Set once the refusal has been logged (permission refusals are, where they are decided).
    logged = False

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "description": self.description}


class BadRequest(AdminError):
    """The input is malformed: ``field`` names it, ``expected`` says what was expected (400)."""

    def __init__(self, field: str, expected: str):
        super().__init__(f"{field}: expected {expected}")
        self.field = field
        self.expected = expected

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "problems": [{"field": self.field, "expected": self.expected}]}


class Unauthorized(AdminError):
    """No credentials, or credentials that are unknown, expired or revoked (401)."""

    status = 401
    code = "invalid_token"


class Forbidden(AdminError):
    """The principal may see the object but its roles do not allow this action (403)."""

    status = 403
    code = "forbidden"


class NotFound(AdminError):
    """No such object, or one the principal holds no role for: the two are not told apart (404)."""

    status = 404
    code = "not_found"


class StateConflict(AdminError):
    """The object is not in a state that allows the action (a version already activated,
    changed since it was staged) (409)."""

    status = 409
    code = "conflict"


class ValidationFailed(AdminError):
    """The change would make a registry that fails validation; ``problems`` lists why (422).

    Each problem is ``{"field", "expected"}``: ``field`` is ``"<source>: <path>"`` as the
    validator names it (``tenants/vantaa.yaml: identity_providers[0].metadata.xml``).
    """

    status = 422
    code = "invalid_registry"

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems) or ["the registry: expected a valid registry"]
        super().__init__(f"{len(self.problems)} problem(s): the change was not staged or activated")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "problems": [split_problem(p) for p in self.problems]}


class PayloadTooLarge(AdminError):
    """The request body is larger than the API takes (413)."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AdminError):
    """A request body that is not ``application/json`` (415)."""

    status = 415
    code = "unsupported_media_type"


class NotAvailable(AdminError):
    """This deployment cannot do that yet (501): not a fault of the input."""

    status = 501
    code = "not_implemented"


def split_problem(problem: str) -> dict[str, str]:
    """``"<source>: <field>: expected <what>"`` as ``{"field": "<source>: <field>", "expected": "<what>"}``."""
    head, sep, expected = problem.partition(": expected ")
    if not sep:
        return {"field": "", "expected": problem}
    return {"field": head, "expected": expected}
