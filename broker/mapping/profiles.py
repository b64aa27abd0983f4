"""The names each release profile uses: one list per profile, for SAML and OIDC alike.

Every attribute a profile releases is named here once: its SAML ``Name``
(NameFormat ``uri``), the ``FriendlyName`` sent with it, the name pysaml2 peers
give it locally (``attribute_maps/mpassid.py``), the OIDC claim carrying the
same information, the scope (:data:`broker.mapping.SCOPES`) that releases it and
whether it has one value.  :mod:`broker.mapping.release` produces only these
names, the SAML IdP frontend labels attributes from this list, and the
attribute map shipped for service providers is built from it, so a name added
to a profile reaches every kind of service (a test holds the three together).

``mpassid`` is MPASSid's data model v1.4 exactly: the FriendlyName is sent only
where MPASSid sends one (``urn:mpass.id:learningMaterialsCharge`` and
``urn:mpass.id:role_v1.1`` go without: SAML Core §2.7.3.1 makes it optional and
never a processing key); its OIDC claims are the SAML names, except
``given_name`` and ``family_name``.  ``digione`` is the broker's own profile
(``docs/mapping.md``): its OIDC claims are JSON, so its ``claim`` column names
the claim with the same content in another shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

NAME_FORMAT_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"


@dataclasses.dataclass(frozen=True)
class ProfileName:
    """One attribute of a release profile."""

    name: str                    # the SAML Attribute Name (NameFormat uri)
    friendly_name: str | None    # the FriendlyName on the wire; None: none is sent
    scope: str                   # the scope releasing it (a key of broker.mapping.SCOPES)
    claim: str                   # the OIDC claim with the same content in this profile
    single: bool                 # one value (an OIDC string) or many (an OIDC list)
    local: str = ""              # the local name in pysaml2 attribute maps; default the FriendlyName

    @property
    def local_name(self) -> str:
        return self.local or self.friendly_name or self.name


MPASSID: tuple[ProfileName, ...] = (
    ProfileName("urn:mpass.id:uid", "mpassUsername", "openid", "urn:mpass.id:uid", True),
    ProfileName("urn:oid:2.5.4.42", "givenName", "profile", "given_name", True),
    ProfileName("urn:oid:2.5.4.4", "sn", "profile", "family_name", True),
    ProfileName("urn:mpass.id:nickname", "nickname", "profile", "urn:mpass.id:nickname", True),
    ProfileName("urn:oid:1.3.6.1.4.1.16161.1.1.27", "learnerId", "learner_id",
                "urn:oid:1.3.6.1.4.1.16161.1.1.27", True),
    ProfileName("urn:mpass.id:classLevel", "mpassClassLevel", "class_level", "urn:mpass.id:classLevel", True),
    ProfileName("urn:mpass.id:role", "mpassRole", "roles", "urn:mpass.id:role", False),
    ProfileName("urn:mpass.id:role_v1.1", None, "roles", "urn:mpass.id:role_v1.1", False, local="mpassRoleV11"),
    ProfileName("urn:mpass.id:schoolInfo", "mpassSchoolInfo", "schools", "urn:mpass.id:schoolInfo", False),
    ProfileName("urn:mpass.id:educationProviderInfo", "mpassEducationProviderInfo", "education_providers",
                "urn:mpass.id:educationProviderInfo", False),
    ProfileName("urn:mpass.id:originalIssuer", "originalIssuer", "education_providers",
                "urn:mpass.id:originalIssuer", True),
    # The local name MPASSid's own service integrations request it by (its FriendlyName is not sent).
    ProfileName("urn:mpass.id:learningMaterialsCharge", None, "learning_materials",
                "urn:mpass.id:learningMaterialsCharge", False, local="mpassLearningMaterialsCharge"),
)

DIGIONE: tuple[ProfileName, ...] = (
    ProfileName("urn:digione:uid", "digioneUid", "openid", "sub", True),
    ProfileName("urn:oid:2.5.4.42", "givenName", "profile", "given_name", True),
    ProfileName("urn:oid:2.5.4.4", "sn", "profile", "family_name", True),
    ProfileName("urn:digione:nickname", "nickname", "profile", "nickname", True, local="digioneNickname"),
    ProfileName("urn:digione:learnerId", "learnerId", "learner_id", "learner_id", True, local="digioneLearnerId"),
    ProfileName("urn:digione:classLevel", "digioneClassLevel", "class_level", "class_level", True),
    ProfileName("urn:digione:role", "digioneRole", "roles", "roles", False),
    ProfileName("urn:digione:school", "digioneSchool", "schools", "schools", False),
    ProfileName("urn:digione:educationProvider", "digioneEducationProvider", "education_providers",
                "education_providers", False),
    ProfileName("urn:digione:learningMaterialsCharge", "digioneLearningMaterialsCharge", "learning_materials",
                "learning_materials_charges", False),
)

#: The names of each profile (``ReleasePolicy.profile``).
PROFILES: Mapping[str, tuple[ProfileName, ...]] = MappingProxyType({"mpassid": MPASSID, "digione": DIGIONE})

#: Every SAML Name either profile releases, with its entry (the two profiles share the name attributes).
SAML_NAMES: Mapping[str, ProfileName] = MappingProxyType({a.name: a for a in (*MPASSID, *DIGIONE)})

#: The FriendlyName sent with each SAML attribute (names without one are not listed).
SAML_FRIENDLY_NAMES: Mapping[str, str] = MappingProxyType(
    {name: a.friendly_name for name, a in SAML_NAMES.items() if a.friendly_name})


def attribute_map() -> dict[str, object]:
    """A pysaml2 attribute map (``attribute_map_dir``) of every name both profiles release.

    ``fro`` maps each SAML Name to its local name, ``to`` the local names back; no two
    names share a local name, so a peer's metadata can request any of them.
    """
    return {"identifier": NAME_FORMAT_URI,
            "fro": {a.name: a.local_name for a in SAML_NAMES.values()},
            "to": {a.local_name: a.name for a in SAML_NAMES.values()}}


__all__ = ["DIGIONE", "MPASSID", "NAME_FORMAT_URI", "PROFILES", "SAML_FRIENDLY_NAMES", "SAML_NAMES", "ProfileName",
           "attribute_map"]
