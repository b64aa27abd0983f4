"""Fixtures for the mapping tests: two cities with schools, a salt, the schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
from mapping_data import CLAIMS_SCHEMA_PATH, ESPOO, SALT, SCHEMA_PATH, VANTAA

from broker.mapping import TenantScope


@pytest.fixture
def vantaa() -> TenantScope:
    return VANTAA


@pytest.fixture
def espoo() -> TenantScope:
    return ESPOO


@pytest.fixture
def salt() -> bytes:
    return SALT


@pytest.fixture(scope="session")
def identity_schema() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="session")
def claims_schema() -> jsonschema.protocols.Validator:
    """``docs/claims.schema.json``: the ``digione`` profile's ID token and userinfo claims."""
    schema = json.loads(CLAIMS_SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="session")
def access_token_schema() -> jsonschema.protocols.Validator:
    """``docs/claims.schema.json#/$defs/access_token``: what every access token carries."""
    schema = json.loads(CLAIMS_SCHEMA_PATH.read_text())
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/access_token", "$defs": schema["$defs"]})
