"""Apache with mod_auth_mellon (Debian's libapache2-mod-auth-mellon) signs people in through the
broker's SAML IdP with the set-up of docs/services.md, and hands the application every
MPASSid attribute of the ``mpassid`` profile.

The SP's metadata is the one mod_auth_mellon generates (``/mellon/metadata``), registered as
``broker sps add`` does; the IdP metadata is the broker's.  A demo pupil and a demo teacher
sign in at a city's SAML IdP; the CGI of the page prints the ``MELLON_*`` variables.
"""

from __future__ import annotations

import json

import pytest
import requests
from agent import Person
from interop_apache import Apache, browser_session, missing, parse_dump, saml_responses
from interop_docs import snippet
from lxml import etree

from broker.demo.servers import free_port
from broker.pki import ensure_keypair
from broker.registry.relying_parties import ReleasePolicy

pytestmark = pytest.mark.skipif(bool(missing("libapache2-mod-auth-mellon")),
                                reason=missing("libapache2-mod-auth-mellon") or "")

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
XENC = "http://www.w3.org/2001/04/xmlenc#"
#: Every scope a SAML SP may be given: the test SP gets them all.
ALL_SCOPES = ("openid", "roles", "schools", "education_providers", "profile", "learner_id", "class_level",
              "learning_materials")


@pytest.fixture(scope="module")
def apache(stack, tmp_path_factory):
    port = free_port()
    url = f"https://localhost:{port}"
    keys = ensure_keypair(tmp_path_factory.mktemp("mellon"), "mellon-sp", common_name="localhost")
    idp_metadata = requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text
    server = Apache(port=port, modules=("auth_mellon",),
                    service_conf=lambda root: snippet("mod_auth_mellon", {
                        "https://my-app.example": url, "/etc/apache2/digione/": f"{root}/digione/",
                        "/usr/lib/cgi-bin/": f"{root}/cgi-bin/"}),
                    files={"cgi-bin/digione-whoami": snippet("whoami"),
                           "digione/mellon-sp.key": keys.key_path.read_bytes(),
                           "digione/mellon-sp.crt": keys.cert_path.read_bytes(),
                           "digione/digione-idp.xml": idp_metadata})
    with server.running():
        sp_metadata = _session(server).get(f"{url}/mellon/metadata", timeout=5)
        assert sp_metadata.status_code == 200, sp_metadata.text
        server.files["sp-metadata.xml"] = sp_metadata.text
        _register(stack, server, encrypt=False)
        yield server


def _register(stack, apache: Apache, *, encrypt: bool) -> None:
    """Register (or replace) the SP as ``broker sps add my-app-sp.xml --name my-app [--encrypt-assertions]``."""
    stack.app.registry_service.register_sp(str(apache.files["sp-metadata.xml"]), name="my-app", by="test",
                                           policy=ReleasePolicy(scopes=ALL_SCOPES, profile="mpassid"),
                                           encrypt_assertions=encrypt)
    stack.app.rebuild()


def _session(apache: Apache) -> requests.Session:
    session = browser_session(apache.ca_file)
    return session


def _whoami(apache: Apache, tenant: str, username: str) -> tuple[dict[str, str], list[bytes]]:
    """Sign ``username`` in at ``/protected/whoami``: the variables shown, and every SAMLResponse posted."""
    person = Person(_session(apache), stop_at=())
    responses = saml_responses(person)
    response = person.login(f"{apache.url}/protected/whoami", tenant, "koulu", username)
    assert response.status_code == 200, (response.status_code, response.text[:800], apache.error_log())
    env = parse_dump(response.text)
    print(json.dumps(env, indent=1, ensure_ascii=False))
    return env, responses


def test_pupil_gets_every_mpassid_attribute(apache):
    env, _ = _whoami(apache, "turku", "pupil.turku")
    assert env["REMOTE_USER"] == env["MELLON_NAME_ID"] and env["MELLON_uid"].startswith("MPASSOID.")
    assert env["MELLON_givenName"] == "Onni Elias" and env["MELLON_sn"] == "Lehtinen"
    assert env["MELLON_learnerId"].startswith("1.2.246.562.98.")
    assert env["MELLON_classLevel"] == "7"
    role = env["MELLON_role"].split(";")
    assert len(role) == 7 and role[1] == "98531" and role[3:5] == ["Oppilas", "1"]
    assert env["MELLON_role_v1_1"] == f"Turun kaupunki;98531;{role[2]};Oppilas"
    assert (env["MELLON_schoolInfo_0"], env["MELLON_schoolInfo_1"]) == (
        "98531;Hirvensalon demokoulu", "1.2.246.562.10.98530000001;Hirvensalon demokoulu")
    assert env["MELLON_educationProviderInfo"] == "1.2.246.562.10.98530000000;Turun kaupunki"
    assert env["MELLON_originalIssuer"] == "1.2.246.562.10.98530000000"
    assert (env["MELLON_learningMaterialsCharge_0"], env["MELLON_learningMaterialsCharge_1"]) == (
        "0;98531", "0;1.2.246.562.10.98530000001")


def test_teacher_gets_a_role_value_per_school(apache):
    env, _ = _whoami(apache, "tampere", "teacher.tampere")
    roles = sorted(v for k, v in env.items() if k.startswith("MELLON_role_") and k[12:].isdigit())
    assert [r.split(";")[1] for r in roles] == ["98371", "98372"]
    assert all(r.split(";")[3:5] == ["Opettaja", "2"] for r in roles)
    assert (env["MELLON_role_v1_1_0"], env["MELLON_role_v1_1_1"]) == (
        "Tampereen kaupunki;98371;;Opettaja", "Tampereen kaupunki;98372;;Opettaja")
    assert env["MELLON_sn"] == "Järvinen"  # UTF-8 through SAML, lasso and the environment
    assert "MELLON_learnerId" not in env and "MELLON_classLevel" not in env  # a teacher has neither


def test_encrypted_assertions_when_registered_for_them(stack, apache):
    """``--encrypt-assertions``: mellon's metadata publishes its key; lasso decrypts AES-GCM / RSA-OAEP."""
    _register(stack, apache, encrypt=True)
    try:
        env, responses = _whoami(apache, "turku", "teacher.turku")
    finally:
        _register(stack, apache, encrypt=False)
    [to_sp] = [etree.fromstring(r) for r in responses
               if etree.fromstring(r).get("Destination") == f"{apache.url}/mellon/postResponse"]
    assert to_sp.findall(f"{{{SAML}}}EncryptedAssertion") and not to_sp.findall(f".//{{{SAML}}}Assertion")
    assert b"Katja" not in etree.tostring(to_sp)
    assert [e.get("Algorithm") for e in to_sp.iter(f"{{{XENC}}}EncryptionMethod")] == [
        "http://www.w3.org/2009/xmlenc11#aes256-gcm", "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"]
    assert env["MELLON_givenName"] == "Katja Helena"
    assert [r.split(";")[1] for r in (env["MELLON_role_0"], env["MELLON_role_1"])] == ["98531", "98532"]
