"""The city search's index (broker/discovery/search.py, text.py): what a person types finds
their city or school, with or without diacritics, by a prefix, a part of a compound word, an
ending, a typo, a code, the school's city; what matched is marked; and the work per query is
bounded by the matches, never by the number of schools."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from discovery_data import demo_tenants, tenant
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.discovery import search as search_module
from broker.discovery.search import MAX_QUERY, SearchIndex
from broker.discovery.text import edit_distance, fold, prefix_distance, words

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


@pytest.fixture(scope="module")
def index() -> SearchIndex:
    return SearchIndex(demo_tenants())


def first(index: SearchIndex, query: str, lang: str = "fi"):
    hits = index.search(query, lang=lang).hits
    assert hits, f"nothing found for {query!r}"
    return hits[0]


def found(index: SearchIndex, query: str, lang: str = "fi") -> list[tuple[str, str | None]]:
    return [(hit.tenant_id, hit.school_code) for hit in index.search(query, lang=lang).hits]


def marked(hit) -> list[str]:
    return [hit.text[start:end] for start, end in hit.marks]


# -- folding ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,folded", [
    ("Jyväskylä", "jyvaskyla"), ("JYVÄSKYLÄ", "jyvaskyla"), ("Åbo", "abo"), ("Ö-lampi", "o lampi"),
    ("Myyrmäen  koulu–keskus", "myyrmaen koulu keskus"), ("Straße", "strasse"), ("Ærø", "aero"),
    ("Škola Café", "skola cafe"), ("  ", ""), ("a+b(c)*", "a b c"),
])
def test_fold_ignores_case_and_diacritics_and_splits_on_everything_else(text, folded):
    assert fold(text) == folded


def test_words_remember_where_each_letter_came_from():
    name = "Myyrmäen demokoulu"
    first_word, second = words(name)
    assert (first_word.text, second.text) == ("myyrmaen", "demokoulu")
    assert name[slice(*first_word.span(6))] == "Myyrmä"      # the folded "myyrma" is "Myyrmä" in the name
    assert name[slice(*second.span_of(4, 5))] == "koulu"


# -- distances: banded, bounded, and equal to the textbook definition -----------------------------

def _osa(a: str, b: str) -> int:
    """Optimal string alignment distance, the full table (the reference)."""
    d = [[max(i, j) if 0 in (i, j) else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + cost)
    return d[len(a)][len(b)]


@settings(max_examples=400, deadline=None)
@given(st.text("abcd", max_size=9), st.text("abcd", max_size=9), st.integers(0, 2))
def test_edit_distance_is_the_osa_distance_within_the_limit(a, b, limit):
    expected = _osa(a, b)
    assert edit_distance(a, b, limit) == (expected if expected <= limit else None)


@settings(max_examples=400, deadline=None)
@given(st.text("abcd", min_size=1, max_size=8), st.text("abcd", max_size=10), st.integers(0, 2))
def test_prefix_distance_is_the_distance_to_the_closest_prefix(a, b, limit):
    expected = min(_osa(a, b[:j]) for j in range(len(b) + 1))
    assert prefix_distance(a, b, limit) == (expected if expected <= limit else None)


def test_typos_allowed_grow_with_the_word():
    assert edit_distance("kolu", "koulu", 1) == 1
    assert edit_distance("jyvsakyla", "jyvaskyla", 1) == 1            # a transposition is one edit
    assert prefix_distance("tikurila", "tikkurilan", 1) == 1
    assert edit_distance("abc", "xyz", 1) is None


# -- what a person types -------------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["jyvaskyla", "Jyväskylä", "JYVASKYLA", "jyväs", "Jyvaskylä"])
def test_diacritics_do_not_matter(index, typed):
    hit = first(index, typed)
    assert (hit.kind, hit.tenant_id, hit.text) == ("city", "jyvaskyla", "Jyväskylä")
    assert marked(hit)[0].startswith("Jyväs")


def test_a_school_by_its_name_says_what_matched(index):
    hit = first(index, "Tikkurilan koulu")            # the example: "koulu" is inside "demokoulu"
    assert (hit.kind, hit.tenant_id, hit.school_code, hit.lang) == ("school", "vantaa", "90921", "fi")
    assert marked(hit) == ["Tikkurilan", "koulu"]
    assert found(index, "tikkurilan demokoulu")[0] == ("vantaa", "90921")


@pytest.mark.parametrize("typed,expected", [
    ("tikk", ("vantaa", "90921")), ("van", ("vantaa", None)), ("Kortepohjan demok", ("jyvaskyla", "91791")),
    ("myyrm", ("vantaa", "90922")), ("hervannan", ("tampere", "98371")),
])
def test_prefixes_find_what_is_being_typed(index, typed, expected):
    assert found(index, typed)[0] == expected


@pytest.mark.parametrize("typed,expected", [
    ("tikurilan", ("vantaa", "90921")),      # a letter missing
    ("tikkruilan", ("vantaa", "90921")),     # two swapped
    ("jyvskyla", ("jyvaskyla", None)),
    ("lepavaaran", ("espoo", "90492")),
    ("tikurila", ("vantaa", "90921")),       # a typo in a word still being typed
])
def test_typos_are_forgiven(index, typed, expected):
    assert found(index, typed)[0] == expected


def test_fewer_typos_rank_first_and_short_words_get_none(index):
    # "koulu" is in every Finnish demo school name; Oulu is one letter away: it comes after them.
    results = index.search("koulu", lang="fi").hits
    kinds = [hit.kind for hit in results]
    assert kinds[0] == "school" and ("oulu", None) not in [(h.tenant_id, h.school_code) for h in results[:10]]
    assert found(index, "oul")[0] == ("oulu", None)
    assert found(index, "aul") == [], "three letters: no typo allowed"


def test_word_endings_are_understood(index):
    assert found(index, "vantaan")[0] == ("vantaa", None)
    assert found(index, "espoossa")[0] == ("espoo", None)


@pytest.mark.parametrize("typed,kind,expected", [
    ("092", "municipality_code", ("vantaa", None)),
    ("179", "municipality_code", ("jyvaskyla", None)),
    ("90921", "school_code", ("vantaa", "90921")),
])
def test_codes(index, typed, kind, expected):
    hit = first(index, typed)
    assert (hit.kind, (hit.tenant_id, hit.school_code)) == (kind, expected)
    assert marked(hit) == [typed]


def test_code_prefixes_match_but_digits_are_never_guessed(index):
    assert set(found(index, "9092")) == {("vantaa", "90921"), ("vantaa", "90922")}
    assert found(index, "90912") == [], "a mistyped code finds nothing rather than another school"


@pytest.mark.parametrize("typed,lang,expected,text", [
    ("dickursby", "sv", ("vantaa", "90921"), "Dickursby demoskola"),
    ("Vanda", "sv", ("vantaa", None), "Vanda"),
    ("Åbo", "fi", ("turku", None), "Åbo"),
    ("uleaborg", "en", ("oulu", None), "Uleåborg"),
    ("Tikkurila Demo School", "en", ("vantaa", "90921"), "Tikkurila Demo School"),
])
def test_names_in_every_language(index, typed, lang, expected, text):
    hit = first(index, typed, lang)
    assert ((hit.tenant_id, hit.school_code), hit.text) == (expected, text)


def test_the_page_language_breaks_ties_between_one_schools_names(index):
    assert first(index, "tikurila", "fi").lang == "fi"
    assert first(index, "Tikkurila", "en").text == "Tikkurila Demo School"


def test_education_providers(index):
    hit = first(index, "vantaan kaupunki")
    assert (hit.kind, hit.tenant_id, hit.text) == ("provider", "vantaa", "Vantaan kaupunki")
    assert first(index, "city of vantaa", "en").kind == "provider"


def test_a_city_comes_once_and_before_schools_that_share_its_name():
    index = SearchIndex([tenant("vantaa", "Vantaa", "092", [("90001", "Vantaankosken koulu")],
                                provider="Vantaan kaupunki")])
    hits = index.search("vantaa", lang="fi").hits
    assert [(h.kind, h.school_code) for h in hits] == [("city", None), ("school", "90001")]


def test_a_shared_school_name_is_narrowed_by_the_city():
    index = SearchIndex([tenant(city, city.capitalize(), code, [(school, "Keskuskoulu")])
                         for city, code, school in (("vantaa", "092", "90001"), ("espoo", "049", "90002"),
                                                    ("lahti", "398", "90003"))])
    assert len(index.search("keskuskoulu").hits) == 3
    for typed in ("keskuskoulu espoo", "espoo keskusk", "keskuskoulu esbo", "keskuskoulu espoossa"):
        assert found(index, typed) == [("espoo", "90002")], typed
    assert found(index, "espoo") == [("espoo", None)], "a city's name alone is the city, not its schools"


def test_inactive_schools_are_not_offered():
    index = SearchIndex([tenant("lahti", "Lahti", "398", [("90001", "Vanha koulu"), ("90002", "Uusi koulu")],
                                inactive=("90001",))])
    assert found(index, "vanha koulu") == [] and found(index, "90001") == []
    assert found(index, "uusi koulu") == [("lahti", "90002")]


def test_nonsense_and_hostile_queries_are_answered_quickly(index):
    for typed in ("xyzzy", "", "   ", "%00", "<script>", "\x00\x01", "😀", "--", "qwerty koulu"):
        assert index.search(typed, lang="fi").hits == (), typed
    for typed in ("(a+)+$", "ä" * 5000, "a " * 500, "x" * 10_000, "tikkurila " * 100):
        started = time.perf_counter()
        results = index.search(typed, lang="fi")
        assert time.perf_counter() - started < 0.5, typed
        assert len(results.query) <= MAX_QUERY


def test_more_results_than_shown_is_said():
    index = SearchIndex([tenant(f"t{n:03d}", f"Kunta {n}", f"{n:03d}", [(f"9{n:04d}", "Keskuskoulu")])
                         for n in range(40)])
    results = index.search("keskuskoulu", limit=20)
    assert len(results.hits) == 20 and results.more
    assert not index.search("kunta 7", limit=20).more


# -- the work per query ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def national():
    """300 generated municipalities with 3,000 schools (the benchmark's generator)."""
    from discovery import tenants as generated

    items = []
    for doc in generated.generate(300, 3000):
        items.append(tenant(doc["id"], doc["names"], doc["municipality_code"],
                            [(s["code"], s["names"]) for s in doc["schools"]],
                            provider=doc["education_provider"]["names"], idps=len(doc["identity_providers"])))
    return items


def test_a_query_scores_only_names_that_contain_its_rarest_word(national, monkeypatch):
    index = SearchIndex(national)
    scored: list[int] = []
    original = SearchIndex._score

    def counting(self, field_id, matches, lang):
        scored.append(field_id)
        return original(self, field_id, matches, lang)

    monkeypatch.setattr(SearchIndex, "_score", counting)
    school = next(s for t in national for s in t.schools if "Aleksis" not in s.names["fi"])
    city = next(t for t in national if school in t.schools)
    results = index.search(f"{school.names['fi']} {city.names['fi']}", lang="fi")
    assert (results.hits[0].tenant_id, results.hits[0].school_code) == (city.id, school.code)
    assert len(scored) < 400, f"{len(scored)} of {len(index)} names scored"
    scored.clear()
    index.search("keskuskoulu", lang="fi")
    assert len(scored) <= search_module.MAX_FIELDS


def test_the_index_is_built_once_and_queries_build_nothing(national, monkeypatch):
    index = SearchIndex(national)

    def fail(*args, **kwargs):
        raise AssertionError("an index was built on the request path")

    monkeypatch.setattr(SearchIndex, "__init__", fail)
    for typed in ("k", "ke", "kes", "keskusk", "keskuskoulu", "92", "tikkurila"):
        index.search(typed, lang="fi")
