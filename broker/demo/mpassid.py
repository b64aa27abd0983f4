"""MPASSid-style attributes of a demo user, as a city's SAML IdP releases them.

Names and value formats follow the MPASSid data model v1.4 (see
``docs/demo.md``): SAML attribute NameFormat ``uri``, multi-valued attributes as
separate values, school-bound values aligned one per school.
"""

from __future__ import annotations

from typing import Any

from broker.demo.directory import DEMO_DIRECTORY, ROLES, school

NAME_FORMAT_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"

UID = "urn:mpass.id:uid"
GIVEN_NAME = "urn:oid:2.5.4.42"
SURNAME = "urn:oid:2.5.4.4"
NICKNAME = "urn:mpass.id:nickname"
LEARNER_ID = "urn:oid:1.3.6.1.4.1.16161.1.1.27"
SCHOOL_INFO = "urn:mpass.id:schoolInfo"
CLASS_LEVEL = "urn:mpass.id:classLevel"
LEARNING_MATERIALS_CHARGE = "urn:mpass.id:learningMaterialsCharge"
ROLE = "urn:mpass.id:role"
ROLE_V11 = "urn:mpass.id:role_v1.1"
EDUCATION_PROVIDER_INFO = "urn:mpass.id:educationProviderInfo"

FRIENDLY_NAMES: dict[str, str] = {
    UID: "mpassUsername",
    GIVEN_NAME: "givenName",
    SURNAME: "sn",
    NICKNAME: "nickname",
    LEARNER_ID: "learnerId",
    SCHOOL_INFO: "mpassSchoolInfo",
    CLASS_LEVEL: "mpassClassLevel",
    LEARNING_MATERIALS_CHARGE: "learningMaterialsCharge",
    ROLE: "mpassRole",
    ROLE_V11: "mpassRoleV11",
    EDUCATION_PROVIDER_INFO: "mpassEducationProviderInfo",
}
"""SAML attribute name -> FriendlyName; every attribute the demo IdP may release."""

ATTRIBUTE_MAP: dict[str, Any] = {
    "identifier": NAME_FORMAT_URI,
    "fro": dict(FRIENDLY_NAMES),
    "to": {friendly: name for name, friendly in FRIENDLY_NAMES.items()},
}
"""The same, as a pysaml2 attribute map (``saml2.attribute_converter`` format)."""


def attributes(city: str, user: dict[str, Any]) -> dict[str, list[str]]:
    """The attributes ``user`` of ``city`` gets, keyed by SAML attribute name.

    Absent facts (a teacher's learner id, class level) are left out rather than
    sent empty, as MPASSid sources do.
    """
    entry = DEMO_DIRECTORY[city]
    provider = entry["provider"]
    role = ROLES[user["role"]]
    schools = [school(city, code) for code in user["schools"]]
    released: dict[str, list[str]] = {
        UID: [user["mpass_uid"]],
        GIVEN_NAME: [user["given_name"]],
        SURNAME: [user["family_name"]],
        NICKNAME: [user["nickname"]],
        # Both forms per school, as MPASSid sends them: code;name and OID;name.
        SCHOOL_INFO: [f"{s[key]};{s['names']['fi']}" for s in schools for key in ("code", "oid")],
        # v1.4: providerOID;schoolCode;group;roleName;roleCode;institutionOID;officeOID
        ROLE: [
            f"{provider['oid']};{s['code']};{user['group']};{role['mpass_name']};{role['mpass_code']};{s['oid']};"
            for s in schools
        ],
        EDUCATION_PROVIDER_INFO: [f"{provider['oid']};{provider['names']['fi']}"],
    }
    if user["learner_id"]:
        released[LEARNER_ID] = [user["learner_id"]]
    if user["class_level"] is not None:
        released[CLASS_LEVEL] = [str(user["class_level"])]
    if user["learning_materials_charge"] is not None:
        released[LEARNING_MATERIALS_CHARGE] = [f"{user['learning_materials_charge']};{s['code']}" for s in schools]
    if entry["saml"]["role_v11"]:
        # v1.1: municipality;schoolCode;group;roleName
        released[ROLE_V11] = [
            f"{entry['names']['fi']};{s['code']};{user['group']};{role['mpass_name']}" for s in schools
        ]
    return released
