"""A city's OIDC IdP with a private CA that returns the person's claims only at userinfo.

Real peers on sockets: the broker (a demo stack of its own), an OpenID Provider built on
Authlib's server (``authlib_op.py``: ID token with ``sub`` only, claims at userinfo, OIDC
Core §5.4) on a loopback HTTPS server whose certificate a private CA issued
(``private_ca.py``), and a person's browser that trusts that CA (as the city's school
computers do).

* ``yksityinen`` names the CA in its tenant file (``ca_file: yksityinen/op-ca.pem`` in
  ``BROKER_CA_DIR``): its logins work, and the identity is complete although the ID token
  holds only ``sub``: the broker asked userinfo for what its mapping reads, and logged which
  claims were missing, by name only;
* userinfo naming another ``sub`` (§5.3.2), or answering a signed JWT the broker does not
  accept, refuses the login with a proper page and no session;
* ``naapuri`` points two IdPs at the very same server: one without a CA file (the public
  CAs), one with a CA file of its own from another CA. Neither can reach it: the CA file of
  ``yksityinen`` is trusted for ``yksityinen`` only, and ``naapuri`` does not get the
  discovery document ``yksityinen`` fetched from the shared cache either.
"""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from broker.backends.oidc_discovery import CACHE_KEY
from broker.backends.trust import ca_key
from broker.backends.unavailable import UnavailableBackend
from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports

from . import authlib_op
from .agent import HTML, JSON, Person
from .conftest import register_rp
from .flows import REDIRECT, assert_not_signed_in, assert_refused, log_capture
from .private_ca import PrivateCa, serve_https

CITY, NEIGHBOUR = "yksityinen", "naapuri"
HINT = f"{CITY}/op"
PRIVATE = (authlib_op.PERSON["given_name"], authlib_op.PERSON["family_name"], authlib_op.PERSON["oid"],
           authlib_op.PERSON["email"], authlib_op.SUBJECT)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The OP (serving before the broker builds), the CA folder, the tenants, the broker."""
    root = tmp_path_factory.mktemp("upstream-trust")
    city_ca, other_ca = PrivateCa.create("Yksityinen city CA"), PrivateCa.create("Naapuri city CA")
    ca_dir = root / "ca"
    city_ca.write(ca_dir / CITY / "op-ca.pem")
    other_ca.write(ca_dir / f"{NEIGHBOUR}-ca.pem")
    cert, key = city_ca.issue(root / "op-tls")
    ports = Ports(*(free_port() for _ in range(5)))
    broker = f"http://localhost:{ports.broker}"
    secret = secrets.token_urlsafe(24)
    op = authlib_op.AuthlibOp(secret, [f"{broker}/oidc/{CITY}/op/callback"])
    server = serve_https(op.app(), cert, key)
    op.issuer = server.url
    tenants = root / "tenants"
    tenants.mkdir()
    (tenants / f"{CITY}.yaml").write_text(authlib_op.tenant_yaml(CITY, op.issuer, ca_file=f"{CITY}/op-ca.pem"))
    (tenants / f"{NEIGHBOUR}.yaml").write_text(authlib_op.tenant_yaml(
        NEIGHBOUR, op.issuer, client_id="digione-naapuri", municipality="997", extra_idp=f"""\
  - id: own
    type: oidc
    names: {{fi: Oma CA, sv: Egen CA, en: Own CA}}
    issuer: {op.issuer}
    client_id: digione-naapuri-own
    client_secret: {{env: TENANT_SECRET_NAAPURI_OP}}
    ca_file: {NEIGHBOUR}-ca.pem
    mapping:
      preset: entra
"""))
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=ports, environ={
        "BROKER_TENANTS_DIR": str(tenants), "BROKER_CA_DIR": str(ca_dir),
        "TENANT_SECRET_YKSITYINEN_OP": secret, "TENANT_SECRET_NAAPURI_OP": secrets.token_urlsafe(24)})
    stack.start()
    rp = register_rp(stack, "upstream-trust-rp")
    yield {"stack": stack, "op": op, "rp": rp, "ca": ca_dir / CITY / "op-ca.pem"}
    stack.stop()
    server.shutdown()


@pytest.fixture(autouse=True)
def honest_op(world):
    op = world["op"]
    op.userinfo_sub = None
    op.set_signed_userinfo(False)
    yield
    op.userinfo_sub = None
    op.set_signed_userinfo(False)


def _person(world, language: str = "fi", accept: str = HTML) -> Person:
    person = Person(stop_at=(REDIRECT,), language=language, accept=accept)
    person.http.verify = str(world["ca"])      # the city's school computers trust the city's CA
    person.http.trust_env = False              # (REQUESTS_CA_BUNDLE would replace verify: requests#3829)
    return person


def _sign_in(world, hint: str = HINT, *, language: str = "fi", accept: str = HTML):
    person = _person(world, language, accept)
    authz = world["rp"].authorize(hint)
    response = person.get(authz.url)
    return person, authz, response


def _role_names(claims: dict) -> set[str]:
    """The role names released (entries are names, or objects with a ``role``)."""
    return {role["role"] if isinstance(role, dict) else role for role in claims.get("roles", [])}


def _payload(jwt: str) -> dict:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_claims_only_at_userinfo_make_the_full_identity(world, caplog):
    log_capture(caplog)
    op, rp = world["op"], world["rp"]
    calls = op.userinfo_calls
    _person, authz, response = _sign_in(world)
    claims = rp.redeem(rp.code_from(response, authz), authz)
    id_token = _payload(op.id_tokens[-1])
    assert not {"oid", "given_name", "family_name", "roles"} & id_token.keys(), "the OP put claims in the ID token"
    assert op.userinfo_calls == calls + 1
    assert claims["given_name"] == "Ulla" and claims["family_name"] == "Userinfo"
    assert _role_names(claims) == {"teacher"}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upstream claims read from userinfo")]
    assert lines and f"idp={HINT}" in lines[-1], lines
    assert "missing_from_id_token=oid,given_name,family_name,roles" in lines[-1]
    assert "from_userinfo=email,family_name,given_name,oid,roles,tid" in lines[-1]
    assert "still_missing=-" in lines[-1]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("broker"))
    for value in PRIVATE:
        assert value not in logged, f"personal data {value!r} in the log"


@pytest.mark.parametrize("language,accept", [("fi", HTML), ("sv", HTML), ("en", JSON)])
def test_userinfo_naming_another_subject_is_refused(world, caplog, language, accept):
    """OIDC Core §5.3.2: the userinfo ``sub`` must be the ID token's, else its values are not used."""
    log_capture(caplog)
    world["op"].userinfo_sub = "someone-else-7d1f"
    person, _, response = _sign_in(world, language=language, accept=accept)
    assert_refused(response, person, caplog, status=400, code="invalid_response",
                   message_key="error.invalid_response", detail=r"userinfo sub does not match .*5\.3\.2",
                   rp=world["rp"], private=PRIVATE)
    assert_not_signed_in(person, world["rp"], HINT)


def test_signed_userinfo_is_refused_rather_than_half_read(world, caplog):
    log_capture(caplog)
    world["op"].set_signed_userinfo(True)
    person, _, response = _sign_in(world)
    assert_refused(response, person, caplog, status=502, code="idp_error", message_key="error.idp_error",
                   detail="application/jwt", rp=world["rp"], private=PRIVATE)
    assert_not_signed_in(person, world["rp"], HINT)


@pytest.mark.parametrize("idp", ["op", "own"])
def test_the_private_ca_is_trusted_by_its_tenant_only(world, caplog, idp):
    """``naapuri/op`` (public CAs) and ``naapuri/own`` (a CA file of its own) name the server
    ``yksityinen`` trusts through its CA file: both are unavailable, with a clear page."""
    log_capture(caplog)
    app, op = world["stack"].app, world["op"]
    backend = app.proxy.login.backends[f"oidc_{NEIGHBOUR}_{idp}"]
    assert isinstance(backend, UnavailableBackend)
    assert not isinstance(app.proxy.login.backends[f"oidc_{CITY}_op"], UnavailableBackend)
    person, _, response = _sign_in(world, f"{NEIGHBOUR}/{idp}")
    assert_refused(response, person, caplog, status=503, code="idp_error", message_key="error.idp_error",
                   detail="unavailable", rp=world["rp"])
    # The document yksityinen fetched under its CA is cached under its CA only.
    city_ca = app.registry.tenants.idps[HINT].ca_file
    assert app.store.get(CACHE_KEY + op.issuer + ca_key(city_ca)) is not None
    assert app.store.get(CACHE_KEY + op.issuer) is None


def test_a_rebuild_keeps_the_citys_trust_and_the_neighbours_distrust(world, caplog):
    log_capture(caplog)
    app = world["stack"].app
    app._build()
    assert isinstance(app.proxy.login.backends["oidc_naapuri_op"], UnavailableBackend)
    _person, authz, response = _sign_in(world)
    assert world["rp"].redeem(world["rp"].code_from(response, authz), authz)["given_name"] == "Ulla"
