"""Who and what the demo city identity providers know: schools, groups and people.

``DEMO_DIRECTORY`` is the single source for both demo IdPs (SAML, Entra-shaped OIDC)
and for anyone who needs the same facts elsewhere: the shipped ``tenants/<city>.yaml``
files must name the same municipality codes, provider OIDs, school codes and school
OIDs, and their group-mapping tables the same group GUIDs, or the demo users' schools
and roles will not be recognised.  Change a value here and in the tenant file together.

Everything is deterministic: identifiers that look random (Entra tenant, object and
group GUIDs, MPASSid ``uid``) are derived from names with ``uuid5``/SHA-1, so they are
the same on every machine and in every run.

Codes and OIDs are fake but shaped like real ones: school codes are five digits
(``9`` + municipality code + a running number), organisation OIDs are
``1.2.246.562.10.`` + 11 digits, learner ids use the test arc ``1.2.246.562.98.``.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

PASSWORD = "demo"
"""Every demo user's password."""

_NAMESPACE = uuid.UUID("6f1c3d2e-5b7a-5e4f-9c8d-0a1b2c3d4e5f")
"""Fixed namespace for the derived GUIDs: changing it changes every GUID below."""

ROLES: dict[str, dict[str, str]] = {
    "pupil": {"mpass_name": "Oppilas", "mpass_code": "1", "app_role": "Student"},
    "teacher": {"mpass_name": "Opettaja", "mpass_code": "2", "app_role": "Teacher"},
    "principal": {"mpass_name": "Rehtori", "mpass_code": "6", "app_role": "Principal"},
}
"""Demo roles: the MPASSid role name and code (v1.4) and the Entra app role value."""

# city id, names (fi, sv, en), municipality code, provider names (fi, sv, en),
# the two schools (code, OID, names fi/sv/en), the people (pupil, teacher, principal),
# and how the city's SAML IdP behaves.
_CITIES: tuple[dict[str, Any], ...] = (
    {
        "id": "vantaa",
        "names": ("Vantaa", "Vanda", "Vantaa"),
        "municipality_code": "092",
        "provider": ("1.2.246.562.10.90920000000", ("Vantaan kaupunki", "Vanda stad", "City of Vantaa")),
        "schools": (
            ("90921", "1.2.246.562.10.90920000001",
             ("Tikkurilan demokoulu", "Dickursby demoskola", "Tikkurila Demo School")),
            ("90922", "1.2.246.562.10.90920000002",
             ("Myyrmäen demokoulu", "Myrbacka demoskola", "Myyrmäki Demo School")),
        ),
        "people": (("Aino Maria", "Aino", "Virtanen"), ("Mikko Juhani", "Mikko", "Korhonen"),
                   ("Leena", "Leena", "Mäkinen")),
    },
    {
        "id": "espoo",
        "names": ("Espoo", "Esbo", "Espoo"),
        "municipality_code": "049",
        "provider": ("1.2.246.562.10.90490000000", ("Espoon kaupunki", "Esbo stad", "City of Espoo")),
        "schools": (
            ("90491", "1.2.246.562.10.90490000001",
             ("Tapiolan demokoulu", "Hagalunds demoskola", "Tapiola Demo School")),
            ("90492", "1.2.246.562.10.90490000002",
             ("Leppävaaran demokoulu", "Albergas demoskola", "Leppävaara Demo School")),
        ),
        "people": (("Eetu Johannes", "Eetu", "Nieminen"), ("Sanna Maria", "Sanna", "Laine"),
                   ("Pekka", "Pekka", "Heikkinen")),
        # Like ADFS: only the assertion is signed, the Response envelope is not.
        "saml": {"sign_response": False},
    },
    {
        "id": "tampere",
        "names": ("Tampere", "Tammerfors", "Tampere"),
        "municipality_code": "837",
        "provider": ("1.2.246.562.10.98370000000", ("Tampereen kaupunki", "Tammerfors stad", "City of Tampere")),
        "schools": (
            ("98371", "1.2.246.562.10.98370000001",
             ("Hervannan demokoulu", "Hervanta demoskola", "Hervanta Demo School")),
            ("98372", "1.2.246.562.10.98370000002",
             ("Kalevan demokoulu", "Kaleva demoskola", "Kaleva Demo School")),
        ),
        "people": (("Venla Sofia", "Venla", "Koskinen"), ("Juha Petteri", "Juha", "Järvinen"),
                   ("Riitta", "Riitta", "Lehtonen")),
        # An older source: also releases the v1.1 role form (urn:mpass.id:role_v1.1).
        "saml": {"role_v11": True},
    },
    {
        "id": "turku",
        "names": ("Turku", "Åbo", "Turku"),
        "municipality_code": "853",
        "provider": ("1.2.246.562.10.98530000000", ("Turun kaupunki", "Åbo stad", "City of Turku")),
        "schools": (
            ("98531", "1.2.246.562.10.98530000001",
             ("Hirvensalon demokoulu", "Hirvensalo demoskola", "Hirvensalo Demo School")),
            ("98532", "1.2.246.562.10.98530000002",
             ("Runosmäen demokoulu", "Runosbackens demoskola", "Runosmäki Demo School")),
        ),
        "people": (("Onni Elias", "Onni", "Lehtinen"), ("Katja Helena", "Katja", "Saarinen"),
                   ("Markku", "Markku", "Salminen")),
    },
    {
        "id": "oulu",
        "names": ("Oulu", "Uleåborg", "Oulu"),
        "municipality_code": "564",
        "provider": ("1.2.246.562.10.95640000000", ("Oulun kaupunki", "Uleåborgs stad", "City of Oulu")),
        "schools": (
            ("95641", "1.2.246.562.10.95640000001",
             ("Tuiran demokoulu", "Tuira demoskola", "Tuira Demo School")),
            ("95642", "1.2.246.562.10.95640000002",
             ("Kaakkurin demokoulu", "Kaakkuri demoskola", "Kaakkuri Demo School")),
        ),
        "people": (("Helmi Aurora", "Helmi", "Heinonen"), ("Antti Olavi", "Antti", "Niemi"),
                   ("Tuula", "Tuula", "Heikkilä")),
    },
    {
        "id": "lahti",
        "names": ("Lahti", "Lahtis", "Lahti"),
        "municipality_code": "398",
        "provider": ("1.2.246.562.10.93980000000", ("Lahden kaupunki", "Lahtis stad", "City of Lahti")),
        "schools": (
            ("93981", "1.2.246.562.10.93980000001",
             ("Kärpäsen demokoulu", "Kärpänen demoskola", "Kärpänen Demo School")),
            ("93982", "1.2.246.562.10.93980000002",
             ("Launeen demokoulu", "Laune demoskola", "Laune Demo School")),
        ),
        "people": (("Leo Aleksi", "Leo", "Kinnunen"), ("Minna Kaarina", "Minna", "Salonen"),
                   ("Jari", "Jari", "Turunen")),
    },
    {
        "id": "jyvaskyla",
        "names": ("Jyväskylä", "Jyväskylä", "Jyväskylä"),
        "municipality_code": "179",
        "provider": ("1.2.246.562.10.91790000000", ("Jyväskylän kaupunki", "Jyväskylä stad", "City of Jyväskylä")),
        "schools": (
            ("91791", "1.2.246.562.10.91790000001",
             ("Kortepohjan demokoulu", "Kortepohja demoskola", "Kortepohja Demo School")),
            ("91792", "1.2.246.562.10.91790000002",
             ("Palokan demokoulu", "Palokka demoskola", "Palokka Demo School")),
        ),
        "people": (("Ella Josefiina", "Ella", "Rantanen"), ("Timo Kalevi", "Timo", "Savolainen"),
                   ("Päivi", "Päivi", "Hämäläinen")),
    },
)


def _names(triple: tuple[str, str, str]) -> dict[str, str]:
    return dict(zip(("fi", "sv", "en"), triple, strict=True))


def _guid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def group_id(city: str, school_code: str, role: str) -> str:
    """The Entra group GUID of one school's members in one role (stable, ``uuid5``)."""
    return _guid("group", city, school_code, role)


def _build(spec: dict[str, Any]) -> dict[str, Any]:
    city = spec["id"]
    code = spec["municipality_code"]
    domain = f"{city}.example"
    provider_oid, provider_names = spec["provider"]
    schools = [{"code": c, "oid": oid, "names": _names(n)} for c, oid, n in spec["schools"]]
    first, second = schools[0]["code"], schools[1]["code"]
    groups = [
        {
            "id": group_id(city, school["code"], role),
            "school": school["code"],
            "role": role,
            "display_name": f"{school['names']['fi']}: {ROLES[role]['mpass_name'].lower()}",
        }
        for school in schools
        for role in ROLES
    ]
    # Pupil in the first school; teacher in both (multi-valued school and role
    # attributes, aligned one role per school); principal of the second school.
    memberships = {"pupil": [first], "teacher": [first, second], "principal": [second]}
    users = []
    for role, (given, nickname, family) in zip(ROLES, spec["people"], strict=True):
        username = f"{role}.{city}"
        upn = f"{role}@{domain}"
        user: dict[str, Any] = {
            "username": username,
            "password": PASSWORD,
            "role": role,
            "upn": upn,
            "email": upn,
            "given_name": given,
            "family_name": family,
            "nickname": nickname,
            "display_name": f"{nickname} {family}",
            "schools": memberships[role],
            "group": "",
            "class_level": None,
            "learner_id": None,
            "learning_materials_charge": None,
            "mpass_uid": "MPASSOID." + hashlib.sha1(f"demo-saml/{city}/{username}".encode()).hexdigest(),
            "entra_object_id": _guid("user", city, username),
            "groups": [group_id(city, school, role) for school in memberships[role]],
        }
        if role == "pupil":
            user.update(
                group="7A",
                class_level=7,
                learner_id=f"1.2.246.562.98.{code}00000001",
                learning_materials_charge="0",
            )
        users.append(user)
    return {
        "id": city,
        "names": _names(spec["names"]),
        "municipality_code": code,
        "provider": {"oid": provider_oid, "names": _names(provider_names)},
        "schools": schools,
        "domain": domain,
        "entra_tenant_id": _guid("tenant", city),
        "saml": {"sign_response": True, "role_v11": False, **spec.get("saml", {})},
        "groups": groups,
        "users": users,
    }


def build_directory() -> dict[str, dict[str, Any]]:
    """Build the directory afresh (callers may mutate their copy)."""
    return {spec["id"]: _build(spec) for spec in _CITIES}


DEMO_DIRECTORY: dict[str, dict[str, Any]] = build_directory()
"""city id -> the city's demo facts.  Keys of each entry:

``names`` ({fi, sv, en}), ``municipality_code``, ``provider`` ({oid, names}),
``schools`` ([{code, oid, names}]), ``domain`` (UPN suffix), ``entra_tenant_id``
(GUID), ``saml`` ({sign_response, role_v11}: how the city's SAML IdP behaves),
``groups`` ([{id, school, role, display_name}]: Entra group GUID -> school and role)
and ``users`` ([{username, password, role, upn, email, given_name, family_name,
nickname, display_name, schools, group, class_level, learner_id, learning_materials_charge,
mpass_uid, entra_object_id, groups}]).
"""


def find_user(city: str, login: str) -> dict[str, Any] | None:
    """The city's user whose username or UPN is ``login`` (case-insensitive), if any."""
    login = login.strip().lower()
    for user in DEMO_DIRECTORY[city]["users"]:
        if login in (user["username"], user["upn"]):
            return user
    return None


def school(city: str, code: str) -> dict[str, Any]:
    """The city's school with the given code."""
    return next(s for s in DEMO_DIRECTORY[city]["schools"] if s["code"] == code)
