"""The tenants our broker is started with: the minimal one, or the seven cities plus N generated.

* default: the shipped ``tenants/vantaa.yaml`` alone (one SAML IdP: the benchmark's; one
  OIDC IdP: the demo Entra ID);
* ``--tenants N``: the seven shipped cities (each city's SAML IdP metadata written for the
  benchmark's IdP host; Vantaa, Espoo and Oulu with their Entra IdPs) plus N generated
  municipalities with ``--idps`` identity providers between them (two SAML for one OIDC),
  as issue 5 sizes the platform (300 tenants, 1,000 IdPs).  Generated SAML IdPs have their
  own metadata files and entity ids (sharing one certificate); generated OIDC IdPs all use
  Vantaa's demo Entra ID issuer, whose discovery document the broker fetches once and caches.

Logins always go to Vantaa's IdPs; the others are there to be loaded, routed around and kept
in memory, which is what start-up time, worker RSS and the flatness of a login measure.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from broker.demo import saml_idp
from broker.demo.directory import DEMO_DIRECTORY
from broker.settings import ROOT

from . import idp

ENTRA_CITIES = ("vantaa", "espoo", "oulu")
SHIPPED_IDPS = len(DEMO_DIRECTORY) + len(ENTRA_CITIES)


def write(root: Path, *, idp_keys: Path, entra_secret: str, generated: int = 0, idps: int | None = None) -> dict:
    """Write tenants, metadata and secrets under ``root``; returns counts."""
    tenants, metadata, secrets_dir = root / "tenants", root / "metadata", root / "demo" / "secrets"
    tenants.mkdir(parents=True)
    secrets_dir.mkdir(parents=True)
    cities = [idp.CITY] if not generated else list(DEMO_DIRECTORY)
    for city in cities:
        shutil.copy(ROOT / "tenants" / f"{city}.yaml", tenants)
        if city == idp.CITY:
            idp.write_metadata(idp_keys, metadata / "demo" / f"{city}-idp.xml")
        else:
            saml_idp.write_idp_metadata(idp.IDP_BASE, city, idp_keys, metadata / "demo" / f"{city}-idp.xml")
    for city in ENTRA_CITIES:
        (secrets_dir / f"entra-{city}.secret").write_text(entra_secret)
    counts = {"tenants": len(cities), "idps": 2 if not generated else SHIPPED_IDPS}
    if not generated:
        return counts
    total = max(idps - SHIPPED_IDPS, generated) if idps else 3 * generated
    template = (metadata / "demo" / f"{idp.CITY}-idp.xml").read_text()
    per_tenant: list[list[str]] = [[] for _ in range(generated)]
    for j in range(total):
        per_tenant[j % generated].append("oidc" if j % 3 == 2 else "saml")
    tid = DEMO_DIRECTORY[idp.CITY]["entra_tenant_id"]
    (metadata / "gen").mkdir(parents=True)
    for t, kinds in enumerate(per_tenant):
        name = f"gen-{t:03d}"
        lines = [
            f"id: {name}",
            f"names: {{fi: Kunta {t}, sv: Kommun {t}, en: Municipality {t}}}",
            f'municipality_code: "{t % 1000:03d}"',
            f"domains: [{name}.example]",
            "education_provider:",
            f'  oid: "1.2.246.562.10.7{t:010d}"',
            f"  names: {{fi: Kunta {t}, sv: Kommun {t}, en: Municipality {t}}}",
            "schools:",
        ]
        for s in range(3):
            lines += [f'  - code: "{t:04d}{s + 1}"', f'    oid: "1.2.246.562.10.8{t:06d}{s:04d}"',
                      f"    names: {{fi: Koulu {t}-{s}, sv: Skola {t}-{s}, en: School {t}-{s}}}"]
        lines.append("identity_providers:")
        for k, kind in enumerate(kinds):
            idp_id = f"{kind}-{k}"
            lines += [f"  - id: {idp_id}", f"    type: {kind}",
                      f"    names: {{fi: Tunnukset {k}, sv: Konto {k}, en: Account {k}}}"]
            if kind == "saml":
                entity = f"{idp.IDP_BASE}/{name}-{idp_id}"
                (metadata / "gen" / f"{name}-{idp_id}.xml").write_text(
                    template.replace(f"{idp.IDP_BASE}/{idp.CITY}", entity))
                lines += ["    metadata:", f"      file: gen/{name}-{idp_id}.xml", "    mapping:",
                          "      preset: mpassid-saml"]
            else:
                # A city reads only its own secrets (decision 8): each generated one gets a copy.
                (secrets_dir / f"entra-{name}.secret").write_text(entra_secret)
                lines += [f"    issuer: ${{DEMO_ENTRA_URL}}/{tid}/v2.0", f"    client_id: digione-{idp.CITY}",
                          "    client_secret:", f"      file: ${{BROKER_DEMO_DIR}}/secrets/entra-{name}.secret",
                          "    scopes: [openid, profile, email]", "    mapping:", "      preset: entra",
                          f'      require: {{tid: "{tid}"}}']
        (tenants / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    counts["tenants"] += generated
    counts["idps"] += total
    return counts
