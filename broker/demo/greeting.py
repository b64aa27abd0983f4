"""The line a demo service greets a signed-in person with, from whatever claims it asked for.

Service A asks for ``profile`` and greets by name.  Service B asks only for ``roles`` and
``schools``: its ``sub`` is a pairwise id, which means nothing to a person, so it greets
with the role and the school ("Signed in as a learner at Tikkurilan koulu") and shows the
id only when it has nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: docs/claims.schema.json ``role``, as a person reads it.
ROLE_NAMES = {"learner": "learner", "teacher": "teacher", "staff": "staff member",
              "school_secretary": "school secretary", "substitute_teacher": "substitute teacher",
              "principal": "principal"}
#: The demo pages are in English; a school named in no other language is shown in Finnish.
NAME_LANGUAGES = ("en", "fi", "sv")


def greeting(claims: Mapping[str, Any]) -> str:
    """``Signed in as <name>``, else ``Signed in as a <role> at <school>``, else the (pairwise) id."""
    name = claims.get("name") or " ".join(filter(None, [claims.get("given_name"), claims.get("family_name")]))
    if isinstance(name, str) and name.strip():
        return f"Signed in as {name.strip()}"
    roles = _roles(claims.get("roles"))
    schools = _schools(claims.get("schools"))
    if roles:
        article = "an" if roles[0][0] in "aeiou" else "a"
        return f"Signed in as {article} {_and(roles)}" + (f" at {_and(schools)}" if schools else "")
    if schools:
        return f"Signed in at {_and(schools)}"
    sub = str(claims.get("sub") or "")
    return f"Signed in (pairwise id {sub[:8]}…)" if len(sub) > 8 else f"Signed in (id {sub or 'unknown'})"


def _roles(value: Any) -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [ROLE_NAMES.get(role, role.replace("_", " ")) for role in value if isinstance(role, str)]


def _schools(value: Any) -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    found = []
    for school in value:
        if not isinstance(school, Mapping):
            continue
        names = school.get("names")
        if not isinstance(names, Mapping):
            names = {}
        name = next((names[lang] for lang in NAME_LANGUAGES if isinstance(names.get(lang), str)), None)
        if name or isinstance(school.get("code"), str):
            found.append(name or f"school {school['code']}")
    return found


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
