"""Client registrations take the logout URIs (Back-Channel Logout 1.0 §2.2, Front-Channel
Logout 1.0 §2, RP-Initiated Logout 1.0 §3), validated, and round-trip through the files.

The ``broker clients add`` command is run as a subprocess, as an operator runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.registry.relying_parties import (
    Client,
    RegistrationError,
    RelyingParties,
    read_registration_files,
    write_registration_files,
)

ROOT = Path(__file__).resolve().parents[2]
CB = "https://app.example/cb"


def _data(**extra) -> dict:
    return {"client_id": "app", "redirect_uris": [CB], "secret_sha256": "0" * 64, **extra}


def test_defaults_are_no_logout_uris_and_sid_required():
    client = Client.from_dict(_data())
    assert client.backchannel_logout_uri is None and client.frontchannel_logout_uri is None
    assert client.backchannel_logout_session_required is True
    assert client.frontchannel_logout_session_required is True
    assert client.post_logout_redirect_uris == ()


@pytest.mark.parametrize("uri", [
    "https://app.example/logout",
    "https://api.app.example:8443/oidc/backchannel?tenant=a",  # §2.2: port, path and query allowed
    "http://localhost:8201/backchannel",  # http only for localhost, as redirect URIs
    "http://127.0.0.1/backchannel",
])
def test_backchannel_logout_uri_accepted(uri):
    assert Client.from_dict(_data(backchannel_logout_uri=uri)).backchannel_logout_uri == uri


@pytest.mark.parametrize("uri", [
    "http://app.example/logout",  # plain http off localhost
    "https://app.example/logout#frag",  # §2.2: no fragment
    "https://app.example/logout#",  # not even an empty one
    "/logout",  # not absolute
    "app.example/logout",
    "javascript:alert(1)",
    "ftp://app.example/logout",
    "https://app.example:99999/logout",  # not a port
    "",
    42,
])
def test_backchannel_logout_uri_refused(uri):
    with pytest.raises(RegistrationError, match="backchannel_logout_uri"):
        Client.from_dict(_data(backchannel_logout_uri=uri))


@pytest.mark.parametrize("uri", [
    "https://app.example/fcl",
    "https://app.example/fcl?x=1",  # Front-Channel Logout §2: a query is allowed
    "https://APP.example:443/other/path",  # the same origin written differently
])
def test_frontchannel_logout_uri_on_a_redirect_uris_origin(uri):
    assert Client.from_dict(_data(frontchannel_logout_uri=uri)).frontchannel_logout_uri == uri


@pytest.mark.parametrize("uri", [
    "https://other.example/fcl",  # §2: scheme, host and port of a registered redirect URI
    "https://app.example:8443/fcl",  # another port
    "http://app.example/fcl",  # another scheme
    "https://sub.app.example/fcl",  # another host
    "https://app.example/fcl#x",  # no fragment
    "http://localhost/fcl",  # localhost, but not a redirect URI's origin
])
def test_frontchannel_logout_uri_refused(uri):
    with pytest.raises(RegistrationError, match="frontchannel_logout_uri"):
        Client.from_dict(_data(frontchannel_logout_uri=uri))


def test_frontchannel_logout_uri_on_localhost_with_a_localhost_redirect():
    client = Client.from_dict(_data(redirect_uris=["http://localhost:8201/callback"],
                                    frontchannel_logout_uri="http://localhost:8201/frontchannel"))
    assert client.frontchannel_logout_uri == "http://localhost:8201/frontchannel"
    with pytest.raises(RegistrationError, match="frontchannel_logout_uri"):
        Client.from_dict(_data(redirect_uris=["http://localhost:8201/callback"],
                               frontchannel_logout_uri="http://localhost:8202/frontchannel"))


@pytest.mark.parametrize("uris", [["http://app.example/bye"], ["https://app.example/bye#x"], ["/bye"], "https://x/",
                                  [None]])
def test_post_logout_redirect_uris_are_validated(uris):
    with pytest.raises(RegistrationError, match="post_logout_redirect_uris"):
        Client.from_dict(_data(post_logout_redirect_uris=uris))


@pytest.mark.parametrize("flag", ["backchannel_logout_session_required", "frontchannel_logout_session_required"])
def test_session_required_flags_are_booleans(flag):
    assert getattr(Client.from_dict(_data(**{flag: False})), flag) is False
    with pytest.raises(RegistrationError, match=flag):
        Client.from_dict(_data(**{flag: "false"}))


def test_round_trip_through_the_registry_files(tmp_path):
    parties = RelyingParties()
    client, secret = parties.add_client({
        "client_id": "app", "redirect_uris": [CB], "post_logout_redirect_uris": ["https://app.example/bye"],
        "backchannel_logout_uri": "https://api.app.example/bcl", "backchannel_logout_session_required": False,
        "frontchannel_logout_uri": "https://app.example/fcl?a=1", "frontchannel_logout_session_required": False})
    assert secret
    write_registration_files(tmp_path, {c.client_id: c.to_dict() for c in parties.clients.values()}, {})
    stored = json.loads((tmp_path / "clients" / "app.json").read_text())
    assert stored["backchannel_logout_uri"] == "https://api.app.example/bcl"
    assert stored["frontchannel_logout_uri"] == "https://app.example/fcl?a=1"
    assert stored["backchannel_logout_session_required"] is False
    loaded = _load(tmp_path).client("app")
    assert loaded == client
    assert Client.from_dict(client.to_dict()) == client


def test_an_older_registration_file_loads_with_the_defaults(tmp_path):
    (tmp_path / "clients").mkdir()
    (tmp_path / "clients" / "old.json").write_text(json.dumps({
        "client_id": "old", "redirect_uris": [CB], "secret_sha256": "0" * 64,
        "post_logout_redirect_uris": ["https://app.example/bye"]}))
    old = _load(tmp_path).client("old")
    assert old is not None and old.backchannel_logout_uri is None and old.backchannel_logout_session_required


def _load(directory: Path) -> RelyingParties:
    return RelyingParties.from_documents(*read_registration_files(directory))


def _active(tmp_path: Path) -> RelyingParties:
    """The relying parties of the registry database's active version."""
    from broker.registry.database import open_database
    from broker.registry.documents import of_kind
    from broker.registry.versions import RegistryVersions

    documents = RegistryVersions(open_database(
        f"sqlite:///{tmp_path / 'registry' / 'registry.sqlite3'}")).state().documents
    return RelyingParties.from_documents(of_kind(documents, "client"), of_kind(documents, "sp"))


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The real ``broker`` command on a site of its own: one valid tenant, the registry in SQLite."""
    from tenant_data import Site, saml_idp, tenant

    site = Site(tmp_path)
    if not any(site.tenants.iterdir()):
        site.write_metadata()
        site.write_tenant(tenant("vantaa", saml_idp()))
    env = {**site.env(), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([sys.executable, "-m", "broker", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_clients_add_takes_the_logout_uris(tmp_path):
    result = _cli(tmp_path, "clients", "add", "--client-id", "cli-rp", "--redirect-uri", CB,
                  "--post-logout-redirect-uri", "https://app.example/bye",
                  "--post-logout-redirect-uri", "https://app.example/bye2",
                  "--backchannel-logout-uri", "https://api.app.example/oidc/bcl",
                  "--frontchannel-logout-uri", "https://app.example/oidc/fcl")
    assert result.returncode == 0, result.stderr
    client = _active(tmp_path).client("cli-rp")
    assert client is not None
    assert client.post_logout_redirect_uris == ("https://app.example/bye", "https://app.example/bye2")
    assert client.backchannel_logout_uri == "https://api.app.example/oidc/bcl"
    assert client.frontchannel_logout_uri == "https://app.example/oidc/fcl"
    assert client.backchannel_logout_session_required and client.frontchannel_logout_session_required

    bad = _cli(tmp_path, "clients", "add", "--client-id", "bad", "--redirect-uri", CB,
               "--frontchannel-logout-uri", "https://evil.example/fcl")
    assert bad.returncode == 1 and "frontchannel_logout_uri" in bad.stderr
    bad = _cli(tmp_path, "clients", "add", "--client-id", "bad", "--redirect-uri", CB,
               "--backchannel-logout-uri", "http://app.example/bcl")
    assert bad.returncode == 1 and "backchannel_logout_uri" in bad.stderr
    assert _active(tmp_path).client("bad") is None  # nothing activated

    helptext = _cli(tmp_path, "clients", "add", "--help").stdout
    for option in ("--backchannel-logout-uri", "--frontchannel-logout-uri", "--post-logout-redirect-uri"):
        assert option in helptext
    assert "logout_token" in helptext and "iframe" in helptext
