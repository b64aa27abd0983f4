"""The identity providers the benchmark plays.

**SAML**: a pysaml2 ``Server`` built exactly as the demo city IdP builds it
(:func:`broker.demo.saml_idp.idp_config`: the city's key, MPASSid attributes, in-process
signatures), one per service provider under test.  It parses the AuthnRequest the broker
redirected to, and answers with a real Response, Response and Assertion both signed
(RSA-SHA256), for a *new* synthetic pupil on every login (a whole city signing in, not one
user many times).  Its CPU is the benchmark's, never the server's: the SSO URL in its
metadata is never contacted, the benchmark reads the redirect itself.

**OIDC**: the demo Entra ID (:mod:`broker.demo.entra_idp`) served on a thread of the
benchmark's main process; the broker exchanges codes at its token endpoint over HTTP.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

warnings.filterwarnings("ignore", message=".*CFB has been moved")

from saml2 import BINDING_HTTP_REDIRECT, saml  # noqa: E402 - after the warnings filter above
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT  # noqa: E402 - after the warnings filter above
from saml2.server import Server  # noqa: E402 - after the warnings filter above
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256  # noqa: E402 - after the warnings filter above

from broker.demo import mpassid, saml_idp  # noqa: E402 - after the warnings filter above
from broker.demo.directory import DEMO_DIRECTORY, find_user  # noqa: E402 - after the warnings filter above
from broker.saml.pysaml2_crypto import configure_signatures  # noqa: E402 - after the warnings filter above

CITY = "vantaa"
#: Never contacted: the benchmark reads the broker's redirect to it.
IDP_BASE = "http://127.0.0.1:9/bench-saml-idp"
ENTRA_USER = "pupil.vantaa"
ENTRA_PASSWORD = "demo"

logging.getLogger("saml2").setLevel(logging.ERROR)


def entity_id() -> str:
    return saml_idp.entity_id(IDP_BASE, CITY)


def write_metadata(key_dir: Path, path: Path) -> str:
    """Write the IdP's metadata (its key is created in ``key_dir`` if missing); return the XML."""
    saml_idp.write_idp_metadata(IDP_BASE, CITY, key_dir, path)
    return path.read_text()


def synthetic_pupil(index: int, seed: str) -> dict:
    """A pupil of the city who has never signed in before: unique uid, learner id and NameID."""
    user = copy.deepcopy(find_user(CITY, "pupil.vantaa"))
    digest = hashlib.sha1(f"{seed}:{index}".encode()).hexdigest()
    user["username"] = f"bench.{seed}.{index}"
    user["mpass_uid"] = f"MPASSOID.{digest}"
    user["learner_id"] = f"1.2.246.562.98.{10_000_000_000 + index % 90_000_000_000}"
    user["given_name"] = f"Aino{index % 1000}"
    return user


class SamlIdp:
    """The city's IdP answering one service provider."""

    def __init__(self, key_dir: Path, sp_metadata_xml: str):
        self.server = Server(config=saml_idp.idp_config(IDP_BASE, CITY, key_dir, sp_metadata_xml))
        configure_signatures(self.server)
        self.entity_id = entity_id()

    def answer(self, location: str, user: dict) -> tuple[str, dict[str, str]]:
        """Answer the HTTP-Redirect AuthnRequest at ``location``: ``(acs_url, form fields)``."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        message = self.server.parse_authn_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT).message
        sp = message.issuer.text.strip()
        acs = message.assertion_consumer_service_url
        if not acs:  # pysaml2 SPs may name the ACS by index only
            acs = self.server.response_args(message, ["urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"])["destination"]
        released = mpassid.attributes(CITY, user)
        identity = {mpassid.FRIENDLY_NAMES[name]: values for name, values in released.items()}
        name_id = saml.NameID(format=saml.NAMEID_FORMAT_PERSISTENT,
                              text=saml_idp.persistent_id(self.entity_id, sp, user),
                              name_qualifier=self.entity_id, sp_name_qualifier=sp)
        response = self.server.create_authn_response(
            identity, in_response_to=message.id, destination=acs, sp_entity_id=sp, name_id=name_id,
            authn={"class_ref": PASSWORDPROTECTEDTRANSPORT, "authn_instant": 0},
            sign_assertion=True, sign_response=DEMO_DIRECTORY[CITY]["saml"]["sign_response"],
            sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
        fields = {"SAMLResponse": base64.b64encode(str(response).encode()).decode()}
        if query.get("RelayState"):
            fields["RelayState"] = query["RelayState"]
        return acs, fields


def start_entra(*, port: int, key_dir: Path, secret: str, redirect_uris: list[str],
                cities: tuple[str, ...] = ("vantaa", "espoo", "oulu")):
    """The demo Entra ID of ``cities``, on a thread of this process; returns the server handle."""
    from broker.demo import entra_idp
    from broker.demo.servers import serve_in_thread

    app = entra_idp.create_app(
        base_url=f"http://127.0.0.1:{port}",
        tenants={city: DEMO_DIRECTORY[city]["entra_tenant_id"] for city in cities},
        clients={f"digione-{city}": {"secret": secret, "redirect_uris": redirect_uris} for city in cities},
        key_dir=key_dir)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    def counted(environ, start_response):  # its server starts a thread per request: see forks()
        ENTRA_REQUESTS[0] += 1
        return app(environ, start_response)

    return serve_in_thread(counted, "127.0.0.1", port)


#: Requests the demo Entra ID served in this process (each one a new thread of its server).
ENTRA_REQUESTS = [0]


def entra_issuer(port: int) -> str:
    return f"http://127.0.0.1:{port}/{DEMO_DIRECTORY[CITY]['entra_tenant_id']}/v2.0"
