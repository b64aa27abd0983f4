"""Finding the login on the demo stack, as a browser without JavaScript and as the page's
script: the search form, the JSON answer, gzip, the masked CSRF token, the site pages, the
service's logo, and every hint (idp_hint, acr_values, login_hint domains, MPASSid's
authnsource, and a school's code or OID) through real OIDC and SAML peers."""

from __future__ import annotations

import gzip
import secrets
from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest
import requests
from agent import Person, choice_form, forms, links, register_client
from authlib.integrations.requests_client import OAuth2Session
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import AuthnContextClassRef
from saml2.samlp import RequestedAuthnContext

from broker.pki import ensure_keypair
from broker.registry.relying_parties import ReleasePolicy

REDIRECT = "https://rp-disco.example.org/callback"
LOGO = "https://cdn.rp-disco.example.org/logo.png"
SP = "https://sp-disco.example.org/sp"
ACS = "https://sp-disco.example.org/acs"


@pytest.fixture(scope="module")
def rp(stack):
    client, secret = register_client(stack, client_id="e2e-disco", name="Oppimisalusta", redirect_uris=[REDIRECT],
                                     logo_uri=LOGO, policy={"scopes": ["openid", "roles", "schools"]})
    return client.client_id, secret


def _meta(stack) -> dict:
    return requests.get(f"{stack.broker_url}/.well-known/openid-configuration", timeout=5).json()


def authorize_url(stack, rp, **extra) -> tuple[str, OAuth2Session, str]:
    client_id, secret = rp
    session = OAuth2Session(client_id, secret, scope="openid roles schools", redirect_uri=REDIRECT,
                            code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(_meta(stack)["authorization_endpoint"], code_verifier=verifier,
                                              nonce=secrets.token_urlsafe(16), **extra)
    return url, session, verifier


def start(stack, rp, **extra) -> tuple[Person, requests.Response]:
    person = Person()
    url, _, _ = authorize_url(stack, rp, **extra)
    return person, person.get(url)


def signed_in(stack, rp, person: Person, response: requests.Response, username: str) -> dict:
    """Sign in at the city's IdP and redeem the code: the ID token's claims."""
    callback = Person.callback(person.sign_in(response, username))
    assert callback.startswith(REDIRECT) and "code=" in callback, callback
    return parse_qs(urlsplit(callback).query)


def page(response: requests.Response):
    return lxml.html.fromstring(response.text)


# -- without JavaScript -------------------------------------------------------------------------------

def test_without_javascript_a_school_is_searched_chosen_and_signed_in(stack, rp):
    person, city_page = start(stack, rp)
    assert urlsplit(city_page.url).path == "/disco" and city_page.status_code == 200
    search = next(f for f in forms(city_page) if f.method == "GET")
    assert urlsplit(search.action).path == "/disco"
    search.fields["q"] = "Tikkurilan koulu"                           # what the issue says finds nothing today
    results = person.get(search.action + "?" + "&".join(f"{k}={v}" for k, v in search.fields.items()))
    doc = page(results)
    first = doc.xpath("//ul[@id='result-list']/li/*")[0]
    assert first.text_content().startswith("Tikkurilan demokoulu — Vantaa")
    assert first.xpath(".//mark/text()") == ["Tikkurilan", "koulu"]
    # Vantaa has two ways in: its page, which names the school, then the city's SAML IdP.
    methods = person.get(links(results, "school=90921")[0])
    assert page(methods).xpath("//p[@id='school']/text()") == ["Koulu: Tikkurilan demokoulu"]
    form = choice_form(methods, "vantaa/koulu")
    assert form is not None
    signed_in(stack, rp, person, person.post(form.action, form.fields), "pupil.vantaa")


def test_without_javascript_a_city_with_one_way_in_is_one_click(stack, rp):
    person, _ = start(stack, rp)
    results = person.get(f"{stack.broker_url}/disco?q=jyvaskyla&lang=sv")    # no ä: Jyväskylä all the same
    form = choice_form(results, "jyvaskyla/koulu")
    assert form is not None and page(results).get("lang") == "sv"
    signed_in(stack, rp, person, person.post(form.action, form.fields), "teacher.jyvaskyla")


def test_no_matches_tells_the_person_and_points_to_help(stack, rp):
    person, _ = start(stack, rp)
    results = person.get(f"{stack.broker_url}/disco?q=xyzzy")
    none = page(results).xpath("//div[@id='no-matches']")[0]
    assert "Haulla ”xyzzy” ei löytynyt kuntaa eikä koulua." in none.text_content()
    help_page = person.get(none.xpath(".//a/@href")[0])
    assert help_page.status_code == 200 and "Ohjeet ja apu" in help_page.text
    assert page(help_page).xpath("//a[text()='Takaisin kirjautumiseen']/@href") == [f"{stack.broker_url}/disco?lang=fi"]


# -- the page's script: the JSON answer ----------------------------------------------------------------

def test_the_search_answers_json_without_a_flow(stack):
    response = requests.get(f"{stack.broker_url}/disco/search", params={"q": "dickursby", "lang": "sv"},
                            headers={"Accept": "application/json"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "1 träff"
    assert body["results"] == [{"kind": "school", "kind_label": "Skola", "name": "Dickursby demoskola",
                                "matched": None, "marks": [[0, 9]], "where": "— Vanda", "tenant": "vantaa",
                                "school": "90921", "idp": None,
                                "href": f"{stack.broker_url}/disco?tenant=vantaa&lang=sv&school=90921"}]


@pytest.mark.parametrize("params", [{"q": "x" * 20_000}, {"q": "\x00\u2028%"}, {"lang": "xx", "q": "oulu"}, {},
                                    {"q": "(a+)+$" * 50}])
def test_hostile_search_input_is_answered_never_5xx(stack, params):
    response = requests.get(f"{stack.broker_url}/disco/search", params=params, timeout=10)
    assert response.status_code in (200, 400, 414), response.status_code
    if response.status_code == 200:
        assert len(response.json()["query"]) <= 100


# -- compression ------------------------------------------------------------------------------------------

def _raw(person: Person | None, url: str, encoding: str) -> requests.Response:
    http = person.http if person else requests
    return http.get(url, headers={"Accept-Encoding": encoding}, stream=True, timeout=5, allow_redirects=False)


def test_pages_and_answers_are_gzip_compressed_when_accepted(stack, rp):
    person, _ = start(stack, rp)
    for url in (f"{stack.broker_url}/disco", f"{stack.broker_url}/disco?q=koulu",
                f"{stack.broker_url}/disco/search?q=koulu", f"{stack.broker_url}/accessibility?lang=sv"):
        packed = _raw(person, url, "gzip, deflate, br")
        assert packed.headers["Content-Encoding"] == "gzip", url
        assert "Accept-Encoding" in packed.headers["Vary"]
        compressed = packed.raw.read()
        body = gzip.decompress(compressed)
        plain = _raw(person, url, "identity")
        assert "Content-Encoding" not in plain.headers
        unpacked = plain.raw.read()
        assert len(compressed) < len(body) / 2, url
        # The same answer (a page's masked CSRF token differs per response, and comes after its head).
        assert body[:500] == unpacked[:500] and body[:1] in (b"<", b"{"), url


def test_the_csrf_token_is_masked_afresh_in_every_compressed_page(stack, rp):
    person, _ = start(stack, rp)
    flow = stack.app.proxy.seal.open(person.http.cookies.get("digione_flow"))
    tokens = []
    for _ in range(3):
        body = gzip.decompress(_raw(person, f"{stack.broker_url}/disco?q={flow.id[:6]}", "gzip").raw.read()).decode()
        assert flow.id not in body, "the flow id itself is never in a page (BREACH)"
        tokens.append(lxml.html.fromstring(body).xpath("//form[@id='cities']//input[@name='csrf']/@value")[0])
    assert len(set(tokens)) == 3
    # Any of them chooses (the flow's own token, however masked), and only with the POST.
    chosen = person.post(f"{stack.broker_url}/disco/choose", {"idp": "turku/koulu", "csrf": tokens[0]})
    assert chosen.status_code == 200 and any("username" in f.fields for f in forms(chosen))


# -- the page names the service and the platform ------------------------------------------------------------

def test_the_page_names_the_service_with_its_logo_and_the_platform(stack, rp):
    _, city_page = start(stack, rp)
    doc = page(city_page)
    assert doc.xpath("//p[@id='service']")[0].text_content() == "Kirjaudut palveluun: Oppimisalusta"
    assert doc.xpath("//p[@id='service']/img/@src") == [LOGO]
    assert "img-src 'self' data: https://cdn.rp-disco.example.org;" in city_page.headers["Content-Security-Policy"]
    assert doc.xpath("//header/p/text()") == ["DigiOne-kirjautuminen"]
    assert [a.text for a in doc.xpath("//footer//a")] == ["Ohjeet", "Tietosuojaseloste", "Saavutettavuusseloste"]


@pytest.mark.parametrize("path,lang,title", [
    ("help", "fi", "Ohjeet ja apu"), ("privacy", "sv", "Dataskyddsbeskrivning"),
    ("accessibility", "en", "Accessibility statement"), ("privacy", "en", "Privacy notice"),
])
def test_the_site_pages_are_served_from_config(stack, path, lang, title):
    response = requests.get(f"{stack.broker_url}/{path}", params={"lang": lang}, timeout=5)
    assert response.status_code == 200
    doc = lxml.html.fromstring(response.text)
    assert doc.get("lang") == lang and doc.xpath("//h1/text()") == [title]
    assert not doc.xpath("//a[text()='Takaisin kirjautumiseen']"), "no login under way: no way back to it"


# -- hints ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,idp_path", [
    ({"idp_hint": "turku/koulu"}, "/turku/"),
    ({"acr_values": "urn:digione:idp:oulu/koulu"}, "/oulu/"),
    ({"idp_hint": "school:93981"}, "/lahti/"),                               # Kärpäsen demokoulu, Lahti
    ({"acr_values": "urn:digione:school:98531"}, "/turku/"),                 # Hirvensalon demokoulu, Turku
    ({"idp_hint": "school:1.2.246.562.10.91790000002"}, "/jyvaskyla/"),      # Palokan demokoulu, by its OID
], ids=["idp_hint", "acr_values", "school-code", "school-acr", "school-oid"])
def test_a_hint_skips_the_city_page(stack, rp, extra, idp_path):
    person, response = start(stack, rp, **extra)
    assert "/disco" not in response.url and idp_path in response.url, response.url
    assert any("username" in f.fields for f in forms(response))


def test_a_school_code_of_a_city_with_two_ways_in_opens_that_city_naming_the_school(stack, rp):
    person, response = start(stack, rp, idp_hint="school:90491")            # Tapiolan demokoulu, Espoo
    assert urlsplit(response.url).path == "/disco"
    assert parse_qs(urlsplit(response.url).query) == {"tenant": ["espoo"], "school": ["90491"]}
    assert page(response).xpath("//p[@id='school']/text()") == ["Koulu: Tapiolan demokoulu"]
    signed_in(stack, rp, person, person.choose(response, "espoo", "entra"), "pupil@espoo.example")


def test_an_unknown_school_code_shows_the_search_for_it(stack, rp):
    _, response = start(stack, rp, idp_hint="school:12345")
    assert parse_qs(urlsplit(response.url).query) == {"q": ["12345"]}
    assert page(response).xpath("//div[@id='no-matches']"), "the person sees that nothing matches, and help"


def test_a_malformed_school_hint_is_refused_to_the_service(stack, rp):
    _, response = start(stack, rp, idp_hint="school:abc")
    location = Person.callback(response)
    assert location.startswith(REDIRECT) and parse_qs(urlsplit(location).query)["error"] == ["invalid_request"]


def test_a_login_hint_domain_picks_the_city(stack, rp):
    _, response = start(stack, rp, login_hint="maija@espoo.example")          # Espoo: two ways in
    assert parse_qs(urlsplit(response.url).query) == {"tenant": ["espoo"]}
    person, response = start(stack, rp, login_hint="pupil@turku.example")    # Turku: one
    assert "/turku/" in response.url


@pytest.fixture(scope="module")
def sp(stack, tmp_path_factory):
    key, cert = ensure_keypair(tmp_path_factory.mktemp("sp-disco"), "sp", common_name=SP)
    idp_metadata = requests.get(f"{stack.broker_url}/saml2/idp/metadata", timeout=5).text
    config = SPConfig().load({
        "entityid": SP, "key_file": str(key), "cert_file": str(cert), "metadata": {"inline": [idp_metadata]},
        "service": {"sp": {"endpoints": {"assertion_consumer_service": [(ACS, BINDING_HTTP_POST)]},
                           "want_assertions_signed": True, "want_response_signed": True,
                           "allow_unsolicited": False}}})
    stack.app.registry_service.register_sp(create_metadata_string(None, config=config).decode(), name="e2e-sp-disco",
                                           by="test", policy=ReleasePolicy(profile="mpassid"))
    stack.app.rebuild()
    return Saml2Client(config)


@pytest.mark.parametrize("class_ref,city,username", [
    ("urn:mpass.id:authnsource:tampere-koulu", "tampere", "pupil.tampere"),
    ("urn:digione:idp:oulu/koulu", "oulu", "pupil.oulu"),
    ("urn:digione:school:93982", "lahti", "principal.lahti"),                # Launeen demokoulu, Lahti
], ids=["mpassid-authnsource", "digione-idp", "digione-school"])
def test_a_saml_sp_hint_in_the_requested_authn_context(stack, sp, class_ref, city, username):
    person = Person()
    context = RequestedAuthnContext(authn_context_class_ref=[AuthnContextClassRef(text=class_ref)])
    request_id, info = sp.prepare_for_authenticate(entityid=f"{stack.broker_url}/saml2/idp/metadata",
                                                   binding=BINDING_HTTP_REDIRECT, requested_authn_context=context)
    response = person.get(dict(info["headers"])["Location"])
    assert "/disco" not in response.url and f"/{city}/" in response.url, response.url
    answer = person.sign_in(response, username)
    form = next(f for f in forms(answer) if "SAMLResponse" in f.fields)
    authn = sp.parse_authn_request_response(form.fields["SAMLResponse"], BINDING_HTTP_POST,
                                            outstanding={request_id: "/"})
    assert authn.assertion.signature is not None            # pysaml2 verified it against the broker's metadata
