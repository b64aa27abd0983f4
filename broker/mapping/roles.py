"""Role names and MPASSid role strings.

Sources name roles in many ways (``Oppilas``, ``opiskelija``, ``Student``, an Entra
app role ``Teacher``, a role code ``2``); :func:`role_code` recognises them all as
the six role codes of the MPASSid data model.  :func:`parse_role_string` reads the
structured MPASSid role attribute in its 4-field (v1.1) and 7-field (v1.4) forms.

Both are total: on any string they return a result or ``None``, never raise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from broker.mapping.model import ROLE_CODES

# Keys are normalised with _norm(); values are role codes.  Finnish, Swedish and
# English forms seen from school systems, Entra app roles and directory affiliations.
_SYNONYMS: dict[str, int] = {
    # 1 learner
    "oppilas": 1, "oppija": 1, "opiskelija": 1, "student": 1, "pupil": 1, "learner": 1,
    "elev": 1, "studerande": 1, "studerande elev": 1,
    # 2 teacher
    "opettaja": 2, "teacher": 2, "lärare": 2, "larare": 2, "faculty": 2,
    # 3 administrative staff
    "hallintohenkilö": 3, "hallintohenkilo": 3, "hallinto": 3, "henkilökunta": 3, "staff": 3,
    "administrative staff": 3, "administrator": 3, "personal": 3, "administrativ personal": 3,
    # 4 school secretary
    "koulusihteeri": 4, "sihteeri": 4, "school secretary": 4, "secretary": 4, "skolsekreterare": 4,
    # 5 substitute teacher
    "sijaisopettaja": 5, "sijainen": 5, "substitute teacher": 5, "substitute": 5, "vikarie": 5,
    "vikarierande lärare": 5,
    # 6 principal
    "rehtori": 6, "principal": 6, "headteacher": 6, "head teacher": 6, "rektor": 6,
}
_SYNONYMS.update({name.replace("_", " "): code for name, code in ROLE_CODES.items()})

_SEPARATORS = re.compile(r"[\s_\-]+")


def _norm(name: str) -> str:
    return _SEPARATORS.sub(" ", name.strip().casefold()).strip()


def normalize_role_names(names: Mapping[str, int]) -> dict[str, int]:
    """Normalise an extra vocabulary (``{'oppilaat': 1}``) the way lookups will see it."""
    return {_norm(k): v for k, v in names.items()}


def role_code(name: str, extra: Mapping[str, int] | None = None) -> int | None:
    """The role code (1-6) that ``name`` denotes, or ``None`` if unrecognised.

    ``name`` may be a role code (``"2"``), a canonical name (``teacher``) or a
    synonym in Finnish, Swedish or English, in any case.  ``extra`` is a rule's own
    vocabulary, already normalised with :func:`normalize_role_names`; it wins.
    """
    if not isinstance(name, str):
        return None
    key = _norm(name)
    if extra and key in extra:
        return extra[key]
    if len(key) == 1 and key in "123456":
        return int(key)
    return _SYNONYMS.get(key)


class RoleString(NamedTuple):
    """One parsed MPASSid role value.

    ``provider`` is the education provider OID (v1.4, and some v1.1 senders) or a
    municipality name (v1.1); ``code`` is ``None`` when the role is unrecognised.
    Empty fields are empty strings.
    """

    provider: str
    school: str
    group: str
    role: str
    code: int | None
    school_oid: str
    office_oid: str
    version: str


def parse_role_string(value: str) -> RoleString | None:
    """Parse ``provider;school;group;role`` (v1.1) or
    ``providerOID;schoolCode;group;roleName;roleCode;institutionOID;officeOID`` (v1.4).

    v1.4 senders often omit trailing empty fields, so 5 to 7 fields read as v1.4.
    Returns ``None`` when the value has another shape.  The role code wins over the
    role name when both are present; a code outside 1-6 makes the role
    unrecognised (``code is None``) rather than falling back to the name.
    """
    if not isinstance(value, str):
        return None
    parts = [p.strip() for p in value.split(";")]
    if len(parts) == 4:
        provider, school, group, role = parts
        return RoleString(provider, school, group, role, role_code(role), "", "", "1.1")
    if 5 <= len(parts) <= 7:
        parts += [""] * (7 - len(parts))
        provider, school, group, role, code_text, school_oid, office_oid = parts
        if code_text:
            code = int(code_text) if len(code_text) == 1 and code_text in "123456" else None
        else:
            code = role_code(role)
        return RoleString(provider, school, group, role, code, school_oid, office_oid, "1.4")
    return None
