"""The direct builders of :mod:`broker.login.internal` give what SATOSA's constructors give."""

from __future__ import annotations

import pytest
from satosa.internal import AuthenticationInformation, InternalData

from broker.login.internal import auth_information, internal_data

AUTH = {"auth_class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
        "timestamp": "2026-05-04T07:59:12Z", "issuer": "https://idp.example.fi/idp", "authority": ["x"]}


def _same(ours, satosa) -> None:
    assert type(ours) is type(satosa)
    assert list(ours.data.items()) == list(satosa.data.items())   # the same keys, in the same order
    assert ours.to_dict() == satosa.to_dict()


@pytest.mark.parametrize("fields", [{}, AUTH, {"issuer": "https://idp.example.fi/idp"}])
def test_auth_information_is_satosas(fields):
    _same(auth_information(**fields), AuthenticationInformation(**fields))


@pytest.mark.parametrize("fields", [
    {},
    {"requester": "https://sp.example.fi"},
    {"requester": "client-a", "requester_name": [{"text": "Service A", "lang": "en"}]},
    {"auth_info": "auth", "requester": "client-a", "attributes": {"roles": ["learner"]}, "subject_id": "u1",
     "subject_type": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"},
])
def test_internal_data_is_satosas(fields):
    if fields.get("auth_info") == "auth":
        fields = {**fields, "auth_info": AuthenticationInformation(**AUTH)}
    ours, satosa = internal_data(**fields), InternalData(**fields)
    _same(ours, satosa)
    _same(ours.auth_info, satosa.auth_info)
    # Attribute access, assignment and SATOSA's own round trip work on ours as on theirs.
    ours.attributes = {"a": ["1"]}
    satosa.attributes = {"a": ["1"]}
    _same(ours, satosa)
    _same(InternalData.from_dict(ours.to_dict()), InternalData.from_dict(satosa.to_dict()))
