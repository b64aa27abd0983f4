"""The demo services' pages as a newcomer sees them, signed in through the broker over HTTP."""

from __future__ import annotations

import json

import lxml.html
from agent import Person


def _page(response):
    assert response.status_code == 200, response.text[-400:]
    return lxml.html.fromstring(response.text)


def _claims(page) -> dict[str, str]:
    return {row.get("data-claim"): row.xpath("td")[2].text_content()
            for row in page.xpath('//table[@id="claims"]/tbody/tr[@data-source="id_token"]')}


def test_service_b_greets_with_the_role_and_school_not_the_pairwise_id(stack):
    service_a, service_b = stack.service_urls
    person = Person(language="en")
    a = _page(person.login(f"{service_a}/login", "turku", "koulu", "pupil.turku"))
    assert a.get_element_by_id("who").text_content().startswith("Signed in as "), "A greets by name"

    b = _page(person.get(f"{service_b}/login"))   # the broker's SSO session answers at once
    released = _claims(b)
    assert released["aud"] == "demo-service-b"
    assert "name" not in released and "family_name" not in released, "B asks only for roles and schools"
    roles, schools = json.loads(released["roles"]), json.loads(released["schools"])
    assert roles == ["learner"] and schools, (roles, schools)
    greeting = b.get_element_by_id("who").text_content()
    assert greeting == f"Signed in as a learner at {schools[0]['names']['en']}", greeting
    assert released["sub"][:8] not in greeting, "no pairwise id when there is something to say"


def test_claim_names_never_break_inside_a_word_values_may(stack):
    service_a, _ = stack.service_urls
    person = Person(language="en")
    page = _page(person.login(f"{service_a}/login", "turku", "koulu", "teacher.turku"))
    rows = page.xpath('//table[@id="claims"]/tbody/tr')
    assert rows
    for row in rows:
        source, claim, value = row.xpath("td")
        assert source.get("class") == claim.get("class") == "name" and value.get("class") == "value"
    style = page.xpath("string(//style)")
    assert "th, td.name { white-space: nowrap; }" in style
    rule = next(line for line in style.splitlines() if line.strip().startswith("td.value"))
    assert "overflow-wrap: anywhere" in rule and "monospace" in rule
    # Nothing but the value column may break anywhere.
    assert style.count("overflow-wrap: anywhere") == 1 and "word-break" not in style
