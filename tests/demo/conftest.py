"""Fixtures for the demo peers: a key folder, a test SAML SP, running demo IdPs.

The peers run on real sockets (``broker.demo.servers``); the clients are real
protocol implementations (pysaml2's ``Saml2Client``, Authlib), never mocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import lxml.html
import pytest
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_PERSISTENT

from broker.demo import entra_idp, saml_idp
from broker.demo.directory import DEMO_DIRECTORY
from broker.demo.servers import ServerHandle, free_port, serve_in_thread
from broker.pki import ensure_keypair

SP_ENTITY_ID = "http://sp.test/sp"
SP_ACS = "http://sp.test/acs/post"
SP_SLO_REDIRECT = "http://sp.test/slo/redirect"
SP_SLO_POST = "http://sp.test/slo/post"
SAML_CITIES = ("vantaa", "espoo", "tampere")


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo-keys")


def sp_config(key_dir: Path, *, entity_id: str = SP_ENTITY_ID, acs: str = SP_ACS, idp_metadata: list[str] = (),
              want_response_signed: bool = False, key_name: str = "test-sp",
              slo: tuple[tuple[str, str], ...] = ((SP_SLO_REDIRECT, BINDING_HTTP_REDIRECT),
                                                  (SP_SLO_POST, BINDING_HTTP_POST))) -> SPConfig:
    """A pysaml2 SP: wants signed assertions, persistent NameIDs, keeps unknown attributes.

    It signs with ``key_name`` (its metadata names that key) and lists the ``slo``
    SingleLogoutService endpoints.  Its signatures and checks are pysaml2's own
    (the ``xmlsec1`` program), independent of the demo IdP's in-process ones.
    """
    keys = ensure_keypair(key_dir, key_name)
    config = SPConfig()
    config.load({
        "entityid": entity_id,
        "service": {"sp": {
            "endpoints": {"assertion_consumer_service": [(acs, BINDING_HTTP_POST)],
                          "single_logout_service": list(slo)},
            "want_assertions_signed": True,
            "want_response_signed": want_response_signed,
            "authn_requests_signed": False,
            "allow_unknown_attributes": True,
            "name_id_format": NAMEID_FORMAT_PERSISTENT,
        }},
        "key_file": str(keys.key_path),
        "cert_file": str(keys.cert_path),
        "metadata": {"inline": list(idp_metadata)} if idp_metadata else {},
        "accepted_time_diff": 60,
    })
    return config


@dataclasses.dataclass
class SamlIdp:
    handle: ServerHandle
    sp_metadata_calls: list[int]
    sp_entities: list[str]
    """The SP EntityDescriptors that ``sp_metadata()`` serves (tests may add one)."""
    sp_entity_id: str = SP_ENTITY_ID
    acs: str = SP_ACS

    @property
    def url(self) -> str:
        return self.handle.url

    def entity_id(self, city: str) -> str:
        return saml_idp.entity_id(self.url, city)


@pytest.fixture(scope="session")
def saml_idp_server(key_dir) -> Iterator[SamlIdp]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    entities = [str(entity_descriptor(sp_config(key_dir)))]
    calls: list[int] = []

    def sp_metadata() -> str:
        calls.append(1)
        inner = "".join(entity.split("?>", 1)[-1] for entity in entities)
        md = "urn:oasis:names:tc:SAML:2.0:metadata"
        return f'<md:EntitiesDescriptor xmlns:md="{md}">{inner}</md:EntitiesDescriptor>'

    app = saml_idp.create_app(base_url=base_url, cities=SAML_CITIES, key_dir=key_dir, sp_metadata=sp_metadata)
    with serve_in_thread(app, "127.0.0.1", port) as handle:
        yield SamlIdp(handle, calls, entities)


@pytest.fixture
def saml_sp(saml_idp_server, key_dir) -> Callable[..., Saml2Client]:
    """Build a test SP that trusts the demo IdPs (metadata fetched from the IdP over HTTP)."""
    import requests

    metadata = [requests.get(f"{saml_idp_server.url}/{city}/metadata", timeout=5).text for city in SAML_CITIES]

    def build(**kwargs) -> Saml2Client:
        return Saml2Client(config=sp_config(key_dir, idp_metadata=metadata, **kwargs))

    return build


@dataclasses.dataclass
class EntraIdp:
    handle: ServerHandle
    client_id: str = "test-rp"
    # Characters that client_secret_basic must form-encode before base64.
    client_secret: str = "test-secret/with+odd=chars:"
    redirect_uri: str = "http://rp.test/callback"
    post_logout_redirect_uri: str = "http://rp.test/signed-out"
    # A second application, with a registered front-channel logout URL (the first one's is derived).
    other_client_id: str = "test-rp-2"
    other_client_secret: str = "second-secret"
    other_redirect_uri: str = "http://rp2.test/oidc/cb"
    other_frontchannel_logout_uri: str = "http://rp2.test/fc-logout?app=2"

    @property
    def url(self) -> str:
        return self.handle.url

    def issuer(self, city: str) -> str:
        return entra_idp.issuer(self.url, DEMO_DIRECTORY[city]["entra_tenant_id"])


ENTRA_CITIES = ("vantaa", "oulu")


@pytest.fixture(scope="session")
def entra_server(key_dir) -> Iterator[EntraIdp]:
    port = free_port()
    spec = EntraIdp(None)
    app = entra_idp.create_app(
        base_url=f"http://127.0.0.1:{port}",
        tenants={city: DEMO_DIRECTORY[city]["entra_tenant_id"] for city in ENTRA_CITIES},
        clients={spec.client_id: {"secret": spec.client_secret, "redirect_uris": [spec.redirect_uri],
                                  "post_logout_redirect_uris": [spec.post_logout_redirect_uri]},
                 spec.other_client_id: {"secret": spec.other_client_secret, "redirect_uris": [spec.other_redirect_uri],
                                        "frontchannel_logout_uri": spec.other_frontchannel_logout_uri}},
        key_dir=key_dir,
    )
    with serve_in_thread(app, "127.0.0.1", port) as handle:
        yield dataclasses.replace(spec, handle=handle)


def _login_form(html: str) -> tuple[str, dict[str, str]]:
    form = lxml.html.fromstring(html).xpath('//form[.//button[@id="login"]]')
    assert form, "no login form on the page"
    return form[0].action, dict(form[0].form_values())


def _only_form(html: str) -> tuple[str, dict[str, str]]:
    forms = lxml.html.fromstring(html).forms
    assert len(forms) == 1, f"expected one form, found {len(forms)}"
    return forms[0].action, dict(forms[0].form_values())


@pytest.fixture
def login_form() -> Callable[[str], tuple[str, dict[str, str]]]:
    """Parse a page's login form (the form with the ``#login`` button): (action, fields)."""
    return _login_form


@pytest.fixture
def only_form() -> Callable[[str], tuple[str, dict[str, str]]]:
    """Parse a page's single form (an auto-POST page): (action, fields)."""
    return _only_form


@dataclasses.dataclass
class Services:
    """Demo services A and B, clients of the demo Entra's Vantaa tenant (the issuer here)."""

    a: str
    b: str
    idp: str
    issuer: str


@pytest.fixture(scope="module")
def services(key_dir) -> Iterator[Services]:
    """Services A and B, and the demo Entra they sign in with (registered with their logout URLs)."""
    from broker.demo import service

    tenant = DEMO_DIRECTORY["vantaa"]["entra_tenant_id"]
    idp_port, a_port, b_port = free_port(), free_port(), free_port()
    idp_url, a_url, b_url = (f"http://127.0.0.1:{port}" for port in (idp_port, a_port, b_port))
    idp = entra_idp.create_app(
        base_url=idp_url, tenants={"vantaa": tenant}, key_dir=key_dir,
        clients={name: {"secret": f"{name}-secret", "redirect_uris": [f"{url}/callback"],
                        "post_logout_redirect_uris": [f"{url}/"],
                        "frontchannel_logout_uri": f"{url}/frontchannel-logout"}
                 for name, url in (("svc-a", a_url), ("svc-b", b_url))},
    )
    issuer = entra_idp.issuer(idp_url, tenant)
    a = service.create_app(name="Demo service A", base_url=a_url, issuer=issuer, client_id="svc-a",
                           client_secret="svc-a-secret", other_service=("Demo service B", f"{b_url}/login"),
                           cookie_name="demo_service_a")
    b = service.create_app(name="Demo service B", base_url=b_url, issuer=issuer, client_id="svc-b",
                           client_secret="svc-b-secret", other_service=("Demo service A", f"{a_url}/"),
                           cookie_name="demo_service_b")
    with serve_in_thread(idp, "127.0.0.1", idp_port), serve_in_thread(a, "127.0.0.1", a_port), \
            serve_in_thread(b, "127.0.0.1", b_port):
        yield Services(a_url, b_url, idp_url, issuer)
