"""Test data shared by the mapping tests: two cities with schools, and a salt.

Imported by name (pytest puts this directory on sys.path); a module, not
conftest, so that test tables can use it at import time.
"""

from __future__ import annotations

from pathlib import Path

from broker.mapping import School, TenantScope

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "identity.schema.json"
CLAIMS_SCHEMA_PATH = SCHEMA_PATH.with_name("claims.schema.json")

VANTAA_PROVIDER = "1.2.246.562.10.67019405611"
ESPOO_PROVIDER = "1.2.246.562.10.90008375488"

VANTAA = TenantScope(
    tenant_id="vantaa",
    provider_oid=VANTAA_PROVIDER,
    provider_names={"fi": "Vantaan kaupunki", "sv": "Vanda stad", "en": "City of Vantaa"},
    schools={
        "03083": School("03083", "1.2.246.562.10.41253773158",
                        {"fi": "Kaivokselan koulu", "sv": "Kaivoksela skola", "en": "Kaivoksela School"}),
        "03084": School("03084", "1.2.246.562.10.52251087186", {"fi": "Myyrmäen koulu", "sv": "Myrbacka skola"}),
        "03085": School("03085", "1.2.246.562.99.00000000003", {"fi": "Vanha koulu"}, active=False),
        "00651": School("00651", "1.2.246.562.10.27487106101", {"fi": "Vantaan lukio"}),
    },
)
ESPOO = TenantScope(
    tenant_id="espoo",
    provider_oid=ESPOO_PROVIDER,
    provider_names={"fi": "Espoon kaupunki", "sv": "Esbo stad"},
    schools={
        "02134": School("02134", "1.2.246.562.10.16347564286", {"fi": "Tapiolan koulu", "sv": "Hagalunds skola"}),
        "02135": School("02135", "1.2.246.562.99.00000000012", {"fi": "Leppävaaran koulu"}),
    },
)
SALT = b"test-salt-0123456789abcdef-test-salt"
