"""Staging and activating admin changes: validation first, then a version, answers limited to what the caller sees.

:class:`Staging` is the write half of :mod:`broker.admin.operations`, which has decided
that the principal may make the change before it calls here (nothing here decides a
permission).  A change is validated as the whole registry it would make (the checks of
``broker check``) *before* it is staged, so an invalid change leaves no version behind and
answers :class:`~broker.admin.errors.ValidationFailed` (422) with the problems the
principal may read; a validator that fails on a document instead of naming a problem is
answered the same way (:func:`~broker.admin.views.validator_failed`), never as a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from broker.admin.errors import BadRequest, StateConflict, ValidationFailed
from broker.admin.principals import Principal
from broker.admin.views import validator_failed, visible_problems
from broker.logs import current_correlation_id
from broker.registry.diff import unified
from broker.registry.versions import Documents, Invalid, Key, Version, VersionError, canonical

logger = logging.getLogger("broker.admin")
#: What the registry's validator raises on a document it cannot read (instead of naming a problem).
_VALIDATOR_FAULTS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


class Staging:
    def __init__(self, settings: Any, registry_service: Any):
        self.settings = settings
        self.service = registry_service
        self.versions = registry_service.versions

    def version_dict(self, p: Principal, version: Version) -> dict[str, Any]:
        """A version as ``p`` sees it: only the objects ``p`` may read, its report filtered."""
        data = version.to_dict()
        data["touches"] = [t for t in data["touches"] if p.reads(t["kind"], t["key"])]
        if data.get("report"):
            data["report"] = self.report(p, data["report"])
        return data

    def report(self, p: Principal, report: Mapping[str, Any]) -> dict[str, Any]:
        """A validation report: whole for a platform admin; else the warnings ``p`` may read."""
        if p.is_platform_admin:
            return {"valid": True, **report}
        return {"valid": True, "warnings": visible_problems(self.settings, p, report.get("warnings") or [])}

    def validate(self, p: Principal, documents: Documents) -> dict[str, Any]:
        try:
            report = self.service.validate(documents)
        except Invalid as exc:
            raise ValidationFailed(visible_problems(self.settings, p, exc.problems)) from None
        except _VALIDATOR_FAULTS as exc:
            raise validator_failed(exc) from None
        return self.report(p, report)

    def stage(self, p: Principal, action: str, changes: Mapping[Key, dict[str, Any] | None], comment: str, *,
              status: str = "staged", restores: int | None = None, activate: bool = False) -> dict[str, Any]:
        """Validate, stage (and with ``activate`` activate) ``changes``; ``{"version", "report", "diff", "changes"}``.

        Objects already as asked are left out; a change of nothing is :class:`StateConflict`.
        """
        current = self.versions.state().documents
        # Compared and kept as JSON: a tuple and a list are one thing once stored.
        effective = {k: None if v is None else json.loads(canonical(v)) for k, v in changes.items()
                     if _json(current.get(k)) != _json(v)}
        if not effective:
            raise StateConflict("nothing to stage: the registry already holds exactly this")
        candidate: Documents = dict(current)
        for key, content in effective.items():
            if content is None:
                candidate.pop(key, None)
            else:
                candidate[key] = content
        report = self.validate(p, candidate)
        try:
            version = self.service.stage(effective, by=p.name, comment=comment, status=status, restores=restores)
        except VersionError as exc:
            raise BadRequest("document", str(exc).split(": expected ", 1)[-1]) from None
        logger.info("admin staged correlation_id=%s principal=%s action=%s version=%s status=%s objects=%s",
                    current_correlation_id() or "-", p.name, action, version.id, status,
                    ",".join(f"{k}:{key}" for k, key in sorted(effective)))
        if activate:
            version = self.activate(p, action, version.id)
        seen = [c for c in self.versions.changes(version.id) if p.reads(c.kind, c.key)]
        return {"version": self.version_dict(p, version), "report": report, "diff": "".join(unified(c) for c in seen),
                "changes": [{"kind": c.kind, "key": c.key, "action": c.action} for c in seen]}

    def activate(self, p: Principal, action: str, version_id: int) -> Version:
        """Activate (validated again, atomically: :meth:`RegistryService.activate`)."""
        try:
            activated = self.service.activate(version_id, by=p.name)
        except Invalid as exc:
            raise ValidationFailed(visible_problems(self.settings, p, exc.problems)) from None
        except VersionError as exc:   # Conflict (changed since staged) or a wrong status
            raise StateConflict(str(exc)) from None
        except _VALIDATOR_FAULTS as exc:
            raise validator_failed(exc) from None
        logger.info("admin activated correlation_id=%s principal=%s action=%s version=%s seq=%s",
                    current_correlation_id() or "-", p.name, action, activated.id, activated.activated_seq)
        return activated

    def restore(self, p: Principal, to_version: int | None, comment: str) -> Version:
        """The whole registry as right after ``to_version`` (default: before the last activation), activated."""
        try:
            version = (self.service.restore(to_version, by=p.name, comment=comment) if to_version
                       else self.service.rollback(by=p.name, comment=comment))
        except Invalid as exc:
            raise ValidationFailed(visible_problems(self.settings, p, exc.problems)) from None
        except VersionError as exc:
            raise StateConflict(str(exc)) from None
        logger.info("admin restored correlation_id=%s principal=%s version=%s", current_correlation_id() or "-",
                    p.name, version.id)
        return version


def _json(content: Mapping[str, Any] | None) -> str | None:
    return None if content is None else canonical(content)
