"""The console's pages without a browser engine: every page in fi/sv/en, the texts complete, the flows
of a city admin, a viewer, a service owner and a platform admin as forms posted.
"""

from __future__ import annotations

import io
import re
import string
from pathlib import Path

import pytest
import yaml
from admin_env import metadata_text

from broker.admin.console import web

TEMPLATES = Path(web.__file__).resolve().parent.parent / "templates"
CONSOLE = Path(web.__file__).resolve().parent
LANGUAGES = ("fi", "sv", "en")
LEAKS = ("Traceback", 'File "', "site-packages", "Internal Server Error", "jinja2")


def location(response) -> str:
    return response.headers["Location"].split("localhost:8100", 1)[-1]


def version_of(response) -> int:
    return int(re.search(r"/versions/(\d+)", response.headers["Location"]).group(1))


# -- texts ------------------------------------------------------------------------------------------

def test_every_text_is_in_three_languages_with_the_same_placeholders():
    messages = yaml.safe_load((CONSOLE / "messages.yaml").read_text(encoding="utf-8"))
    fields = string.Formatter()
    for key, entry in messages.items():
        assert set(entry) == set(LANGUAGES), key
        assert all(isinstance(v, str) and v.strip() for v in entry.values()), key
        names = {lang: {f for _, f, _, _ in fields.parse(entry[lang]) if f} for lang in LANGUAGES}
        assert names["fi"] == names["sv"] == names["en"], (key, names)


def test_every_text_key_the_pages_use_exists():
    messages = yaml.safe_load((CONSOLE / "messages.yaml").read_text(encoding="utf-8"))
    sources = [p.read_text() for p in TEMPLATES.glob("*.html")] + [p.read_text() for p in CONSOLE.glob("*.py")]
    used = set()
    for source in sources:
        used |= set(re.findall(r'''\bt\(\s*["']([a-z_]+\.[a-z_0-9.]+)["']''', source))
        used |= set(re.findall(r'''["']((?:form|signin|error|done)\.[a-z_0-9]+)["']''', source))
    # A key ending in "_" is a prefix the page completes ("status." ~ version.status, "idp.type_" ~ type).
    missing = sorted(key for key in used if key not in messages and not key.endswith(".html")
                     and not (key.endswith(("_", ".")) and any(m.startswith(key) for m in messages)))
    assert not missing


# -- every page, three languages -----------------------------------------------------------------------

PAGES = ["/admin/", "/admin/tenants/vantaa", "/admin/tenants/vantaa/services", "/admin/tenants/vantaa/new-idp/saml",
         "/admin/tenants/vantaa/idps/koulu/saml", "/admin/tenants/vantaa/new-idp/oidc",
         "/admin/tenants/vantaa/idps/koulu/mapping", "/admin/versions", "/admin/versions/1", "/admin/approvals",
         "/admin/services", "/admin/services/svc-vantaa", "/admin/services/clients/new",
         "/admin/services/clients/new?id=svc-vantaa", "/admin/services/sps/new"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_page_renders_in_each_language(browser, tokens, lang):
    person = browser(tokens["platform"])
    first = person.get(f"/admin/?lang={lang}")
    assert any("digione_lang=" + lang in c for c in first.headers.getlist("Set-Cookie"))
    for path in PAGES:
        response = person.get(path)
        html = response.get_data(as_text=True)
        assert response.status_code == 200, (path, html[:500])
        assert f'<html lang="{lang}">' in html, path
        assert response.headers["Content-Language"] == lang
        assert 'href="#main"' in html and '<main id="main"' in html, path
        assert not [leak for leak in LEAKS if leak in html], path
        # Every input and select has a label (hidden fields aside).
        ids = set(re.findall(r'<(?:input|select|textarea)(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', html))
        labelled = set(re.findall(r'<label for="([^"]+)"', html))
        assert ids <= labelled, (path, ids - labelled)


def test_signed_out_pages_lead_to_sign_in_and_back(browser, tokens):
    person = browser()
    response = person.get("/admin/tenants/vantaa")
    assert response.status_code == 303
    assert location(response) == "/admin/signin?next=%2Fadmin%2Ftenants%2Fvantaa"
    person.get(location(response))
    response = person.post("/admin/signin/token", {"token": tokens["vantaa_admin"], "next": "/admin/tenants/vantaa"})
    assert location(response) == "/admin/tenants/vantaa"
    # Never anywhere else after sign-in.
    other = browser()
    other.get("/admin/signin")
    response = other.post("/admin/signin/token", {"token": tokens["vantaa_admin"], "next": "//evil.example/x"})
    assert location(response) == "/admin/"


def test_unknown_paths_and_methods_are_pages_not_errors(browser, tokens):
    person = browser(tokens["vantaa_admin"], "sv")
    for path, status in (("/admin/nothing-here", 404), ("/admin/versions/999999999", 404),
                         ("/admin/versions/abc", 404), ("/admin/tenants/vantaa/idps/nope/mapping", 404)):
        response = person.get(path)
        html = response.get_data(as_text=True)
        assert response.status_code == status, path
        assert '<html lang="sv">' in html and 'id="correlation-id"' in html, path
    response = person.client.delete("/admin/versions/1")
    assert response.status_code == 405
    assert "correlation-id" in response.get_data(as_text=True)
    response = person.get("/admin/api/no-such-endpoint")
    assert response.status_code == 404 and response.json["error"] == "not_found"


# -- a city admin's flow as forms -------------------------------------------------------------------

def test_upload_metadata_then_activate_then_undo(browser, tokens, site):
    person = browser(tokens["vantaa_admin"])
    person.get("/admin/tenants/vantaa/new-idp/saml")
    response = person.post("/admin/tenants/vantaa/new-idp/saml", {
        "idp_id": "toinen", "names_fi": "Toinen", "names_sv": "Andra", "names_en": "Second", "source": "upload",
        "metadata_file": (io.BytesIO(metadata_text("lahti").encode()), "lahti.xml"), "comment": "second IdP"},
        content_type="multipart/form-data")
    assert response.status_code == 303, response.get_data(as_text=True)[:3000]
    staged = version_of(response)
    html = person.get(location(response)).get_data(as_text=True)
    assert 'id="test-link"' in html and "/registry/preview?t=" in html
    assert 'class="status staged"' in html and "second IdP" in html
    response = person.post(f"/admin/versions/{staged}/activate")
    assert location(response) == f"/admin/versions/{staged}?done=activated"
    site.app.rebuild()
    assert "vantaa/toinen" in site.app.registry.tenants.idps
    html = person.get(f"/admin/versions/{staged}").get_data(as_text=True)
    previous = re.search(r'name="to_version" value="(\d+)">\s*<button type="submit" id="undo-vantaa"', html).group(1)
    response = person.post(f"/admin/versions/{staged}/rollback", {"tenant_id": "vantaa", "to_version": previous})
    assert response.status_code == 303 and "done=rolled_back" in response.headers["Location"]
    site.app.rebuild()
    assert "vantaa/toinen" not in site.app.registry.tenants.idps


def test_form_problems_are_shown_next_to_their_fields(browser, tokens):
    person = browser(tokens["vantaa_admin"], "fi")
    person.get("/admin/tenants/vantaa/new-idp/saml")
    response = person.post("/admin/tenants/vantaa/new-idp/saml", {"source": "url", "url": "", "idp_id": ""},
                           content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    for field in ("idp_id", "names_fi", "url", "pin_1"):
        assert f'href="#{field}"' in html, field                       # the summary links to the field
        assert f'id="{field}-error"' in html, field                    # the message is by the field
        assert re.search(rf'id="{field}"[^>]*aria-describedby="[^"]*{field}-error', html), field
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', html), field
    # A problem only the registry's validation finds: 422, in words, linked to the file field.
    response = person.post("/admin/tenants/vantaa/new-idp/saml", {
        "idp_id": "rikki", "names_fi": "a", "names_sv": "b", "names_en": "c", "source": "upload",
        "metadata_file": (io.BytesIO(b"<EntityDescriptor"), "x.xml")}, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'href="#metadata_file"' in html and "well-formed" in html
    assert "/tmp/" not in html, "a server path is shown"
    # A pin that is no fingerprint: the operations' own check, next to the first pin.
    response = person.post("/admin/tenants/vantaa/idps/koulu/saml", {
        "names_fi": "a", "names_sv": "b", "names_en": "c", "source": "url", "url": "https://idp.example/md",
        "entity_id": "https://idp.example/idp", "pin_1": "not-a-fingerprint"}, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="pin_1-error"' in html and "Odotettiin" in html


def test_metadata_url_with_two_pins_for_a_rollover(browser, tokens, site):
    person = browser(tokens["vantaa_admin"])
    person.get("/admin/tenants/vantaa/idps/koulu/saml")
    old, new = "AB" * 32, "cd:" * 31 + "cd"
    response = person.post("/admin/tenants/vantaa/idps/koulu/saml", {
        "names_fi": "Koulu", "names_sv": "Skola", "names_en": "School", "source": "url",
        "url": "https://idp.vantaa.example/metadata", "entity_id": "https://idp.vantaa.example/idp",
        "pin_1": old, "pin_2": new, "comment": "rollover"}, content_type="multipart/form-data")
    assert response.status_code == 303, response.get_data(as_text=True)[:3000]
    staged = version_of(response)
    after = site.app.registry_service.versions.documents(staged)[("tenant", "vantaa")]
    koulu = next(i for i in after["identity_providers"] if i["id"] == "koulu")
    assert koulu["metadata"] == {"url": "https://idp.vantaa.example/metadata",
                                 "signing_cert_sha256": [old.lower(), new.replace(":", "")]}
    # Retiring the old certificate later: the second field moves up, the first is emptied.
    page = person.get("/admin/tenants/vantaa/idps/koulu/saml").get_data(as_text=True)
    assert f'value="{old}"' not in page, "the active version is not the staged one"
    person.post(f"/admin/versions/{staged}/discard")


def test_mapping_explain_is_shown_on_the_same_page(browser, tokens):
    person = browser(tokens["vantaa_viewer"])
    html = person.get("/admin/tenants/vantaa/idps/koulu/mapping").get_data(as_text=True)
    assert 'id="save-mapping"' not in html, "a viewer cannot save rules"
    response = person.post("/admin/tenants/vantaa/idps/koulu/mapping", {
        "mapping": "preset: mpassid-saml\n", "action": "explain",
        "sample": '{"attributes": {"urn:mpass.id:uid": ["abc"]}, "subject": "abc"}'})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="explained"' in html and 'id="identity"' in html
    response = person.post("/admin/tenants/vantaa/idps/koulu/mapping", {
        "mapping": "preset: mpassid-saml\n", "action": "save", "comment": "viewer"})
    assert response.status_code == 403
    # Anchors and aliases are refused before anything reads them.
    person = browser(tokens["vantaa_admin"])
    person.get("/admin/tenants/vantaa/idps/koulu/mapping")
    response = person.post("/admin/tenants/vantaa/idps/koulu/mapping", {
        "mapping": "a: &x [1, 2]\nb: [*x, *x]\n", "action": "save"})
    assert response.status_code == 400 and "aliases" in response.get_data(as_text=True)


def test_allowed_services_table_stages_the_choice(browser, tokens, site):
    person = browser(tokens["vantaa_admin"])
    html = person.get("/admin/tenants/vantaa/services").get_data(as_text=True)
    assert 'id="allow-city-svc-vantaa"' in html and "digione-admin" not in html
    school = site.app.registry.tenants.by_id["vantaa"].schools[0].code
    response = person.post("/admin/tenants/vantaa/services", {
        "mode-city": "chosen", "allow-city-svc-vantaa": "1", f"mode-{school}": "chosen",
        f"allow-{school}-svc-other": "1", "comment": "only ours"})
    assert response.status_code == 303
    staged = version_of(response)
    after = site.app.registry_service.versions.documents(staged)[("tenant", "vantaa")]["allowed_services"]
    assert after == {"default": ["svc-vantaa"], "schools": {school: ["svc-other"]}}
    html = person.get(f"/admin/versions/{staged}").get_data(as_text=True)
    assert "allowed_services" in html
    person.post(f"/admin/versions/{staged}/discard")


def test_service_owner_registers_and_a_platform_admin_approves(browser, tokens, site):
    owner = browser(tokens["owner_new"])
    owner.get("/admin/services/clients/new")
    response = owner.post("/admin/services/clients/new", {
        "client_id": "svc-new", "name": "New service", "redirect_uris": "https://new.example/cb\n",
        "token_endpoint_auth_method": "client_secret_basic", "scope-roles": "1",
        "reason-openid": "to sign people in", "reason-roles": "", "profile": "digione", "subject_type": "pairwise"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="reason-roles-error"' in html
    response = owner.post("/admin/services/clients/new", {
        "client_id": "svc-new", "name": "New service", "redirect_uris": "https://new.example/cb\n",
        "token_endpoint_auth_method": "client_secret_basic", "scope-roles": "1",
        "reason-openid": "to sign people in", "reason-roles": "teachers see more", "profile": "digione",
        "subject_type": "pairwise"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="client-secret"' in html
    version = int(re.search(r'/admin/versions/(\d+)" id="version-link"', html).group(1))
    assert site.app.registry_service.versions.version(version).status == "pending_approval"
    html = owner.get("/admin/services").get_data(as_text=True)
    assert f"/admin/versions/{version}" in html and "pending_approval" in html
    html = owner.get(f"/admin/versions/{version}").get_data(as_text=True)
    assert 'id="approve"' not in html and 'id="activate"' not in html
    assert owner.post(f"/admin/versions/{version}/approve").status_code == 403

    platform = browser(tokens["platform"])
    html = platform.get("/admin/approvals").get_data(as_text=True)
    assert f'data-version="{version}"' in html
    platform.get(f"/admin/versions/{version}")
    response = platform.post(f"/admin/versions/{version}/approve")
    assert location(response) == f"/admin/versions/{version}?done=approved"
    assert site.app.registry_service.versions.version(version).status == "activated"


def test_viewer_sees_no_changes_and_cannot_make_them(browser, tokens):
    person = browser(tokens["vantaa_viewer"])
    html = person.get("/admin/tenants/vantaa").get_data(as_text=True)
    assert 'id="add-saml"' not in html and "/idps/koulu/saml" not in html
    html = person.get("/admin/tenants/vantaa/services").get_data(as_text=True)
    assert 'id="save-services"' not in html and "disabled" in html
    assert person.post("/admin/tenants/vantaa/services", {"mode-city": "all"}).status_code == 403


@pytest.fixture(scope="module")
def issuer():
    """An OIDC issuer on localhost publishing its discovery document (and one that names another issuer)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    documents = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = documents.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for path, named in (("/good/v2.0", "/good/v2.0"), ("/liar/v2.0", "/someone-else")):
        documents[path + "/.well-known/openid-configuration"] = json.dumps({
            "issuer": url + named, "authorization_endpoint": url + path + "/authorize",
            "token_endpoint": url + path + "/token", "jwks_uri": url + path + "/jwks"}).encode()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url
    server.shutdown()
    server.server_close()


def test_an_oidc_idp_is_added_by_its_issuer_and_the_secret_never_shown(browser, tokens, site, issuer):
    person = browser(tokens["vantaa_admin"])
    person.get("/admin/tenants/vantaa/new-idp/oidc")
    form = {"idp_id": "google", "names_fi": "Google", "names_sv": "Google", "names_en": "Google",
            "issuer": issuer + "/liar/v2.0", "client_id": "digione-vantaa-g", "client_secret": "s3cret-value-1"}
    response = person.post("/admin/tenants/vantaa/new-idp/oidc", form)
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="issuer-error"' in html and 'href="#issuer"' in html
    assert "s3cret-value-1" not in html, "the secret is typed again, never echoed"
    response = person.post("/admin/tenants/vantaa/new-idp/oidc", {**form, "issuer": issuer + "/good/v2.0"})
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    staged = version_of(response)
    html = person.get(f"/admin/versions/{staged}").get_data(as_text=True)
    assert "encrypted" in html and "s3cret-value-1" not in html
    person.post(f"/admin/versions/{staged}/discard")
    assert site.app.registry_service.versions.version(staged).status == "discarded"


SP_METADATA = """<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp-new.example/sp">
<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
 Location="https://sp-new.example/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"""


def test_a_saml_service_is_registered_with_reasons_and_waits_for_approval(browser, tokens, site):
    owner = browser(tokens["owner_new"], "sv")
    owner.get("/admin/services/sps/new")
    form = {"name": "sp-new", "scope-schools": "1", "reason-openid": "inloggning", "reason-roles": "roller",
            "reason-schools": "", "profile": "mpassid", "scope-roles": "1"}
    response = owner.post("/admin/services/sps/new", {**form, "metadata_file": (io.BytesIO(SP_METADATA.encode()),
                                                                                "sp.xml")},
                          content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="reason-schools-error"' in html
    response = owner.post("/admin/services/sps/new", {**form, "reason-schools": "skolans namn",
                                                      "metadata_file": (io.BytesIO(SP_METADATA.encode()), "sp.xml")},
                          content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[:3000]
    assert 'id="registered-status"' in html and 'id="client-secret"' not in html
    version = int(re.search(r'/admin/versions/(\d+)" id="version-link"', html).group(1))
    found = site.app.registry_service.versions.version(version)
    assert found.status == "pending_approval" and "skolans namn" in found.comment
    # Someone else's SP name is not the owner's to register.
    response = owner.post("/admin/services/sps/new", {**form, "name": "sp-other", "reason-schools": "x",
                                                      "metadata_file": (io.BytesIO(SP_METADATA.encode()), "sp.xml")},
                          content_type="multipart/form-data")
    assert response.status_code == 404


def test_expiry_warnings_are_shown_when_the_operations_give_them(browser, tokens, monkeypatch):
    from broker.admin.operations import AdminOperations

    real = AdminOperations.tenant

    def tenant(self, p, tenant_id):
        return {**real(self, p, tenant_id), "expiry": [
            {"idp": "vantaa/koulu", "what": "signing certificate", "subject": "CN=idp (ab:cd)",
             "not_after": "2030-01-05T00:00:00Z", "days_left": 6, "level": "critical"},
            {"idp": None, "what": "the broker's SAML SP certificate", "subject": "CN=sp",
             "not_after": "2029-12-01T00:00:00Z", "days_left": -2, "level": "expired"}]}

    monkeypatch.setattr(AdminOperations, "tenant", tenant)
    html = browser(tokens["vantaa_admin"], "fi").get("/admin/tenants/vantaa").get_data(as_text=True)
    assert 'id="expiry"' in html
    assert "Kiireellinen" in html and "vanhenee 2030-01-05 (6 päivän kuluttua)" in html
    assert "Vanhentunut" in html and "vanheni 2029-12-01" in html
