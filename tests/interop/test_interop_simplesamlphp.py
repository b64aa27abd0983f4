"""SimpleSAMLphp (Debian's simplesamlphp, under Apache's mod_php) signs people in through the
broker's SAML IdP with the set-up of docs/services.md, and hands the application every MPASSid
attribute of the ``mpassid`` profile.

The configuration is Debian's /etc/simplesamlphp (config.php, authsources.php, apache.conf),
copied into the test's own directory with the documented blocks appended; only the secrets
file and the directories SimpleSAMLphp writes to are the test's.  The SP's metadata is the one
SimpleSAMLphp publishes, registered as ``broker sps add`` does.
"""

from __future__ import annotations

import glob
import json
import secrets
from pathlib import Path

import pytest
import requests
from agent import Person
from interop_apache import Apache, browser_session, missing, saml_responses
from interop_docs import snippet
from lxml import etree

from broker.demo.servers import free_port
from broker.pki import ensure_keypair
from broker.registry.relying_parties import ReleasePolicy

DEBIAN_CONFIG = Path("/etc/simplesamlphp")
SIMPLESAMLPHP = Path("/usr/share/simplesamlphp/lib/_autoload.php")
MOD_PHP = sorted(glob.glob("/usr/lib/apache2/modules/libphp*.so"))
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
ALL_SCOPES = ("openid", "roles", "schools", "education_providers", "profile", "learner_id", "class_level",
              "learning_materials")


def _skip_reason() -> str | None:
    absent = [name for name, there in (("simplesamlphp", SIMPLESAMLPHP.exists() and DEBIAN_CONFIG.is_dir()),
                                       ("libapache2-mod-php", bool(MOD_PHP))) if not there]
    if absent:
        return (f"Debian package(s) {', '.join(absent)} not installed: apt-get install -y --no-install-recommends "
                f"{' '.join(absent)} php-xml php-mbstring (.ci/run does)")
    return missing()


pytestmark = pytest.mark.skipif(bool(_skip_reason()), reason=_skip_reason() or "")

_APACHE = """\
LoadModule env_module /usr/lib/apache2/modules/mod_env.so
LoadModule php_module {mod_php}
<FilesMatch "\\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
SetEnv SIMPLESAMLPHP_CONFIG_DIR {root}/simplesamlphp
Include /etc/simplesamlphp/apache.conf
Alias /whoami.php {root}/app/whoami.php
<Directory {root}/app>
    Require all granted
</Directory>
"""

# What SimpleSAMLphp writes, in the test's directory (Debian's are root's), and the test's secrets.
_HARNESS_CONFIG = """
// The test harness: secrets and the directories SimpleSAMLphp writes to.
$config['secretsalt'] = '{salt}';
$config['auth.adminpassword'] = '{admin}';
$config['tempdir'] = '{root}/tmp';
$config['datadir'] = '{root}/data';
$config['loggingdir'] = '{root}/log';
$config['logging.handler'] = 'file';
$config['logging.level'] = SimpleSAML\\Logger::WARNING;
$config['session.phpsession.savepath'] = '{root}/sessions';
"""


def _config(root: Path, url: str, broker_url: str) -> dict[str, str]:
    conf = root / "simplesamlphp"
    replace = {"/etc/simplesamlphp/": f"{conf}/"}
    config = (DEBIAN_CONFIG / "config.php").read_text().replace(
        "require_once('/var/lib/simplesamlphp/secrets.inc.php');", "")
    config += "\n" + snippet("simplesamlphp-config", replace) + _HARNESS_CONFIG.format(
        root=root, salt=secrets.token_hex(16), admin=secrets.token_hex(16))
    authsources = (DEBIAN_CONFIG / "authsources.php").read_text() + "\n" + snippet(
        "simplesamlphp-authsources", {**replace, "https://my-app.example": url, "https://<broker>": broker_url})
    return {"config.php": config, "authsources.php": authsources}


@pytest.fixture(scope="module")
def apache(stack, tmp_path_factory):
    port = free_port()
    url = f"https://localhost:{port}"
    keys = ensure_keypair(tmp_path_factory.mktemp("ssp"), "digione-sp", common_name="localhost")
    idp_metadata = requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text
    files: dict[str, str | bytes] = {
        "simplesamlphp/digione-sp.key": keys.key_path.read_bytes(),
        "simplesamlphp/digione-sp.crt": keys.cert_path.read_bytes(),
        "simplesamlphp/digione-idp.xml": idp_metadata,
        "app/whoami.php": snippet("simplesamlphp-app"),
        **{f"{d}/.keep": "" for d in ("tmp", "data", "log", "sessions")},
    }
    server = Apache(port=port, modules=(), service_conf=lambda root: _APACHE.format(root=root, mod_php=MOD_PHP[-1]),
                    files=files)
    for name, text in _config(server.root, url, stack.broker_url).items():
        server.files[f"simplesamlphp/{name}"] = text
    with server.running():
        metadata = browser_session(server.ca_file).get(
            f"{url}/simplesamlphp/module.php/saml/sp/metadata.php/digione", timeout=10)
        assert metadata.status_code == 200, (metadata.status_code, metadata.text[:800], server.error_log())
        server.files["sp-metadata.xml"] = metadata.text
        _register(stack, server, encrypt=False)
        yield server


def _register(stack, apache: Apache, *, encrypt: bool) -> None:
    """Register (or replace) the SP as ``broker sps add sp.xml --name my-ssp-app [--encrypt-assertions]``."""
    stack.app.registry_service.register_sp(str(apache.files["sp-metadata.xml"]), name="my-ssp-app", by="test",
                                           policy=ReleasePolicy(scopes=ALL_SCOPES, profile="mpassid"),
                                           encrypt_assertions=encrypt)
    stack.app.rebuild()


def _whoami(apache: Apache, tenant: str, username: str) -> tuple[dict, list[bytes]]:
    """Sign ``username`` in at ``/whoami.php``: what the page shows, and every SAMLResponse posted."""
    person = Person(browser_session(apache.ca_file), stop_at=())
    responses = saml_responses(person)
    response = person.login(f"{apache.url}/whoami.php", tenant, "koulu", username)
    assert response.status_code == 200, (response.status_code, response.text[:800], apache.error_log())
    got = response.json()
    print(json.dumps(got, indent=1, ensure_ascii=False))
    return got, responses


def test_pupil_gets_every_mpassid_attribute(apache):
    got, _ = _whoami(apache, "oulu", "pupil.oulu")
    attributes = got["attributes"]
    assert got["nameid"].startswith("MPASSOID.") and attributes["urn:mpass.id:uid"] == [got["nameid"]]
    assert attributes["urn:oid:2.5.4.42"] == ["Helmi Aurora"] and attributes["urn:oid:2.5.4.4"] == ["Heinonen"]
    assert attributes["urn:oid:1.3.6.1.4.1.16161.1.1.27"][0].startswith("1.2.246.562.98.")
    assert attributes["urn:mpass.id:classLevel"] == ["7"]
    [role] = attributes["urn:mpass.id:role"]
    assert role.split(";")[1] == "95641" and role.split(";")[3:5] == ["Oppilas", "1"]
    assert [r.split(";")[1:] for r in attributes["urn:mpass.id:role_v1.1"]] == [["95641", role.split(";")[2],
                                                                                   "Oppilas"]]
    assert attributes["urn:mpass.id:schoolInfo"] == ["95641;Tuiran demokoulu",
                                                     "1.2.246.562.10.95640000001;Tuiran demokoulu"]
    assert attributes["urn:mpass.id:originalIssuer"] == ["1.2.246.562.10.95640000000"]
    assert attributes["urn:mpass.id:learningMaterialsCharge"] == ["0;95641", "0;1.2.246.562.10.95640000001"]
    assert attributes["urn:mpass.id:educationProviderInfo"][0].startswith("1.2.246.562.10.95640000000;")


def test_principal_gets_the_principal_role(apache):
    attributes = _whoami(apache, "lahti", "principal.lahti")[0]["attributes"]
    assert [r.split(";")[1:5] for r in attributes["urn:mpass.id:role"]] == [["93982", "", "Rehtori", "6"]]
    assert "urn:oid:1.3.6.1.4.1.16161.1.1.27" not in attributes


def test_encrypted_assertions_when_registered_for_them(stack, apache):
    """``--encrypt-assertions``: SimpleSAMLphp publishes its key and decrypts (xmlseclibs)."""
    _register(stack, apache, encrypt=True)
    try:
        got, responses = _whoami(apache, "jyvaskyla", "teacher.jyvaskyla")
    finally:
        _register(stack, apache, encrypt=False)
    acs = f"{apache.url}/simplesamlphp/module.php/saml/sp/saml2-acs.php/digione"
    [to_sp] = [etree.fromstring(r) for r in responses if etree.fromstring(r).get("Destination") == acs]
    assert to_sp.findall(f"{{{SAML}}}EncryptedAssertion") and not to_sp.findall(f".//{{{SAML}}}Assertion")
    assert got["attributes"]["urn:oid:2.5.4.4"] == ["Savolainen"]
    assert [r.split(";")[1] for r in got["attributes"]["urn:mpass.id:role"]] == ["91791", "91792"]
