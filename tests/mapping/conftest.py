"""Fixtures for the mapping tests: two cities with schools, a salt, the schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
from mapping_data import ESPOO, SALT, SCHEMA_PATH, VANTAA

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
