"""Every YAML and JSON example in docs/*.md is loaded by the loader `broker check` uses.

A fenced block tagged ``yaml`` or ``json`` must say what it is, in an HTML comment on the
nearest non-blank line before it (invisible when the Markdown is rendered):

``<!-- example: tenant -->``
    a whole tenant file;
``<!-- example: tenant-keys -->``
    top-level keys of a tenant file, laid over a minimal valid tenant (:data:`BASE`);
``<!-- example: idp saml -->`` / ``<!-- example: idp oidc -->``
    an identity provider: its keys (laid over a valid IdP of that type), or a list of IdPs
    (``identity_providers:`` or ``- id: …`` items, each laid over one of its ``type``);
``<!-- example: settings -->``
    a ``config/broker.yaml``;
``<!-- example: client -->``
    an OIDC client registration (``clients/<client_id>.json``);
``<!-- not an example: WHY -->``
    not loaded (a log line, a sketch with placeholders), but still parsed as YAML / JSON.

Tenant examples go through :func:`broker.assemble.build_registry` (tenants, mapping rules),
with what the files they name need made real in temporary folders: metadata files (real
IdP metadata with the example's entity id), CA files (a real CA certificate), and the
``TENANT_SECRET_*`` variables they name.  An untagged block that is YAML mapping or list
must be tagged, so that an example cannot slip by unchecked.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from markdown_fences import fences

from broker.settings import ROOT

DOCS = ROOT / "docs"
_MARKER = re.compile(r"^\s*<!--\s*(?:example:\s*(?P<kind>[\w-]+)(?:\s+(?P<arg>[\w-]+))?|not an example:\s*(?P<why>.+?))"
                     r"\s*-->\s*$")
_SECRET_VARIABLE = re.compile(r"\bTENANT_SECRET_[A-Z0-9_]+\b")
KINDS = {"tenant", "tenant-keys", "idp", "settings", "client"}


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    lang: str
    text: str
    marker: str | None       # the comment before the fence, if any

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def blocks() -> list[Block]:
    return [Block(f.file, f.line, f.lang, f.text, f.before if _MARKER.match(f.before) else None)
            for path in sorted(DOCS.glob("*.md")) for f in fences(path)]


ALL = blocks()
TAGGED = [b for b in ALL if b.lang in ("yaml", "yml", "json")]
UNTAGGED = [b for b in ALL if not b.lang]


def _names(text: str) -> dict[str, str]:
    return {"fi": text, "sv": text, "en": text}


#: A valid tenant the fragments are laid over: the schools the docs' examples name, one IdP of each type.
BASE = {
    "id": "vantaa", "names": {"fi": "Vantaa", "sv": "Vanda", "en": "Vantaa"}, "municipality_code": "092",
    "education_provider": {"oid": "1.2.246.562.10.90920000000", "names": _names("Vantaan kaupunki")},
    "schools": [{"code": code, "oid": f"1.2.246.562.10.9092000{i:04d}", "names": _names(f"Koulu {code}")}
                for i, code in enumerate(("03083", "03084", "90921", "90922"), start=1)],
    "identity_providers": [],
}
BASE_IDPS = {
    "saml": {"id": "koulu", "type": "saml", "names": _names("Koulu"), "metadata": {"file": "vantaa/docs-idp.xml"},
             "mapping": {"preset": "mpassid-saml"}},
    "oidc": {"id": "entra", "type": "oidc", "names": _names("Microsoft"),
             "issuer": "https://login.microsoftonline.com/4a6b1c2d-0e1f-4a5b-9c8d-7e6f5a4b3c2d/v2.0",
             "client_id": "digione-docs", "client_secret": {"env": "TENANT_SECRET_VANTAA_DOCS"},
             "mapping": {"preset": "entra"}},
}


def _marker(block: Block) -> tuple[str, str | None] | None:
    """``(kind, arg)`` of an example, ``None`` for a non-example; fails for a block without a marker."""
    match = _MARKER.match(block.marker or "")
    if not match:
        pytest.fail(f"docs/{block.id}: a ```{block.lang} block needs a marker on the line before it: "
                    "<!-- example: tenant | tenant-keys | idp saml | idp oidc | settings | client --> "
                    "or <!-- not an example: why --> (tests/docs/test_docs_examples.py)")
    if match.group("why"):
        return None
    kind, arg = match.group("kind"), match.group("arg")
    assert kind in KINDS, f"docs/{block.id}: unknown example kind {kind!r} (one of {sorted(KINDS)})"
    assert kind != "idp" or arg in BASE_IDPS, f"docs/{block.id}: write <!-- example: idp saml --> or idp oidc"
    return kind, arg


def _parsed(block: Block):
    try:
        return json.loads(block.text) if block.lang == "json" else yaml.safe_load(block.text)
    except (ValueError, yaml.YAMLError) as exc:
        pytest.fail(f"docs/{block.id}: not valid {block.lang.upper()}: {exc}")


def _tenant_document(kind: str, arg: str | None, data) -> dict:
    if kind == "tenant":
        assert isinstance(data, dict), "a tenant file is a mapping"
        return data
    tenant = copy.deepcopy(BASE)
    if kind == "tenant-keys":
        assert isinstance(data, dict), "tenant keys are a mapping"
        tenant["identity_providers"] = [copy.deepcopy(BASE_IDPS["saml"])]
        tenant.update(data)
        return tenant
    items = data.get("identity_providers") if isinstance(data, dict) and "identity_providers" in data else data
    if isinstance(items, list):
        tenant["identity_providers"] = [{**copy.deepcopy(BASE_IDPS.get(item.get("type"), BASE_IDPS[arg])), **item}
                                        if isinstance(item, dict) else item for item in items]
    else:
        assert isinstance(items, dict), "an IdP example is a mapping of its keys or a list of IdPs"
        tenant["identity_providers"] = [{**copy.deepcopy(BASE_IDPS[arg]), **items}]
    return tenant


def _make_files_real(tenant: dict, *, metadata_dir: Path, ca_dir: Path) -> None:
    """The metadata files and CA files the tenant names, made real."""
    from broker.demo import saml_idp as demo_idp
    from tests.security.private_ca import PrivateCa

    keys = metadata_dir.parent / "idp-keys"
    demo_idp.ensure_idp_keys(keys)
    for idp in tenant.get("identity_providers") or []:
        if not isinstance(idp, dict):
            continue
        metadata = idp.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("file"), str):
            xml = demo_idp.metadata_xml("http://localhost:8101", "vantaa", keys)
            if isinstance(idp.get("entity_id"), str):
                xml = re.sub(r'entityID="[^"]*"', f'entityID="{idp["entity_id"]}"', xml, count=1)
            path = metadata_dir / metadata["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(xml, encoding="utf-8")
        for holder in (idp, metadata if isinstance(metadata, dict) else {}):
            if isinstance(holder.get("ca_file"), str):
                PrivateCa.create("Docs example CA").write(ca_dir / holder["ca_file"])


def _check_tenant(document: dict, block: Block, tmp_path: Path) -> None:
    from broker.assemble import build_registry
    from broker.registry.tenants import TenantError
    from broker.settings import Settings

    dirs = {name: tmp_path / name for name in ("metadata", "secrets", "keys", "registry", "ca")}
    for path in dirs.values():
        path.mkdir()
    _make_files_real(document, metadata_dir=dirs["metadata"], ca_dir=dirs["ca"])
    env = {"BROKER_METADATA_DIR": str(dirs["metadata"]), "BROKER_SECRETS_DIR": str(dirs["secrets"]),
           "BROKER_KEYS_DIR": str(dirs["keys"]), "BROKER_REGISTRY_DIR": str(dirs["registry"]),
           "BROKER_CA_DIR": str(dirs["ca"]), "BROKER_SECRET": "docs-example-secret-" + "x" * 32,
           "TENANT_SECRET_VANTAA_DOCS": "docs-secret",
           **{name: "docs-secret" for name in _SECRET_VARIABLE.findall(block.text)}}
    settings = Settings.from_env(env)
    tenant_id = str(document.get("id") or "vantaa")
    try:
        build_registry(settings, {tenant_id: (f"docs/{block.id}", document)}, clients={}, sps={})
    except TenantError as exc:
        pytest.fail(f"docs/{block.id}: the example is refused by the tenant loader:\n  " + "\n  ".join(exc.problems))


@pytest.mark.parametrize("block", TAGGED, ids=[b.id for b in TAGGED])
def test_the_example_loads(block, tmp_path):
    data = _parsed(block)
    marker = _marker(block)
    if marker is None:
        return
    kind, arg = marker
    if kind in ("tenant", "tenant-keys", "idp"):
        _check_tenant(_tenant_document(kind, arg, data), block, tmp_path)
    elif kind == "settings":
        from broker.settings import Settings

        (tmp_path / "broker.yaml").write_text(block.text)
        Settings.from_env({"BROKER_CONFIG_DIR": str(tmp_path), "BROKER_SECRET": "s" * 40,
                           "BROKER_KEYS_DIR": str(tmp_path / "keys"), "BROKER_REGISTRY_DIR": str(tmp_path / "reg")})
    elif kind == "client":
        from broker.registry.relying_parties import RelyingParties, client_document

        client, _ = client_document(data)
        RelyingParties.from_documents({client.client_id: client.to_dict()}, {})


@pytest.mark.parametrize("block", UNTAGGED, ids=[b.id for b in UNTAGGED])
def test_an_untagged_block_is_not_a_hidden_example(block):
    try:
        data = yaml.safe_load(block.text)
    except yaml.YAMLError:
        return
    assert not isinstance(data, (dict, list)) or block.marker, \
        f"docs/{block.id}: this block reads as YAML data: tag it ```yaml (or ```json) and mark it"


def test_the_docs_have_examples_and_the_mapping_examples_are_among_them():
    examples = [b for b in TAGGED if b.marker and "example:" in b.marker and "not an example" not in b.marker]
    assert len([b for b in examples if b.file == "mapping.md"]) >= 4
    assert len([b for b in examples if b.file == "tenants.md"]) >= 5


def test_a_wrong_key_in_an_example_is_caught(tmp_path):
    """The control: the mapping examples as they were (``protocol:``) fail this test."""
    block = Block("mapping.md", 0, "yaml", "- id: wilma\n  protocol: saml\n  mapping: {preset: mpassid-saml}",
                  "<!-- example: idp saml -->")
    with pytest.raises(pytest.fail.Exception, match=r"identity_providers\[0\]\.protocol: expected one of the known"):
        _check_tenant(_tenant_document("idp", "saml", _parsed(block)), block, tmp_path)
