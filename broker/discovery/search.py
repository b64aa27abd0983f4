"""The city search: which city, school or education provider a person means, as they type.

:class:`SearchIndex` is built once per registry version, with the login path
(:func:`broker.assemble.assemble` builds the city pages, which build the index), never on a
request.  It indexes, for every tenant, its names in fi/sv/en, its education provider's names
and its municipality code, and for every active school its names and its school code.  Every
text is split into words folded by :func:`broker.discovery.text.fold` (``ä`` = ``a``,
``ö`` = ``o``, ``å`` = ``a``, case ignored).

A query word matches a word of the index, best first:

=========  ===========================================================================
exact      the same folded word (``jyvaskyla`` for ``Jyväskylä``)
stem       the word with an ending of up to 3 letters (``vantaan`` for ``Vantaa``), from 5 letters on
prefix     the beginning of a word (``tikkuri`` for ``Tikkurilan``): the person is typing
infix      a part of 4 letters or more inside a word (``koulu`` in ``demokoulu``: Finnish
           and Swedish school names are compound words)
typo       1 edit away (2 for words of 8 characters or more) from a word or from the
           beginning of one (``tikurila`` for ``Tikkurilan``); from 4 characters on
=========  ===========================================================================

Codes (digits) match exactly or by prefix only.  A name matches a query when each query
word matches one of its words, or, for a school and a query of several words, a word of its
city's name (``keskuskoulu vantaa``: the many *Keskuskoulu* narrowed to Vantaa's).  The names
of one city (or one school) count once, by the best of them.  Results with fewer typos come
first, then by score: how well each word matched, a city before its schools, the name
beginning with the query, the words in the order typed, how much of the name was typed.
Results say what matched: the :class:`Hit` carries the text that matched as registered,
its language and the spans to mark.

Cost per query: a dictionary read and a binary search for each query word, an
intersection of trigram lists for infixes, a count over trigram lists (of the distinct
words, never of the schools) for typos, with at most :data:`MAX_VERIFIED` candidates
verified by a banded edit distance; then the names containing the rarest query word are
scored, at most :data:`MAX_FIELDS` of them.  No regular expression, no scan of every name.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain

from broker.discovery.text import allowed_typos, edit_distance, fold, prefix_distance, words
from broker.registry.tenant_model import LANGS, Tenant

#: What a name is: the order is also the order of equally good results.
KINDS = ("city", "municipality_code", "provider", "school", "school_code")
_KIND_RANK = {kind: rank for rank, kind in enumerate(KINDS)}
#: Added to a match's score by kind: a city's own name ranks above a school that merely shares it.
_KIND_BONUS = {"city": 25, "municipality_code": 25, "provider": 5, "school": 0, "school_code": 20}

MAX_QUERY = 100         #: characters of a query looked at
MAX_WORDS = 6           #: words of a query looked at
MAX_EXPANSIONS = 400    #: index words a query word may match by prefix or infix
MAX_VERIFIED = 60       #: typo candidates verified per query word
MAX_FIELDS = 5000       #: names scored per query
_SHORT_CACHE = 4096     #: results of one- and two-character queries kept (the broadest queries)
_SHORT_KEPT = 50        #: hits kept per such query
_WORD_CACHE = 2048      #: query words of 4+ letters whose matches are kept
_TYPOS_FOUND = 16       #: typo matches enough for one query word
_LANG_BONUS = 6         #: for a name in the page's language


@dataclasses.dataclass(frozen=True)
class Hit:
    """One result: a city (``school_code`` ``None``) or a school, and the name or code that matched."""

    kind: str                           # one of KINDS: what matched
    tenant_id: str
    school_code: str | None
    text: str                           # the matching name (or code) as registered
    lang: str | None                    # the name's language; None for a code
    marks: tuple[tuple[int, int], ...]  # spans of ``text`` that matched the query
    score: int


@dataclasses.dataclass(frozen=True)
class Results:
    query: str                          # the query, folded
    hits: tuple[Hit, ...]
    more: bool = False                  # more matched than ``hits`` holds


@dataclasses.dataclass(frozen=True)
class _Field:
    entry: tuple[str, str | None]       # (tenant id, school code or None)
    kind: str
    lang: str | None
    text: str
    folded: str
    tokens: tuple[int, ...]             # vocabulary ids, in the text's order
    context: frozenset[int] = frozenset()   # a school's: the words of its city's names


@dataclasses.dataclass(frozen=True)
class _Match:
    quality: int
    how: str                            # exact, prefix, infix, typo
    length: int                         # folded characters to mark
    at: int = 0                         # where the mark starts (infix)


class SearchIndex:
    """Every tenant's and active school's names and codes, ready to be searched (immutable)."""

    def __init__(self, tenants: Iterable[Tenant]):
        tenants = list(tenants)
        size = {tenant.id: len(tenant.schools) for tenant in tenants}
        # The static order (of equal results): kind, name, then the larger municipality first.
        fields = sorted(_fields(tenants), key=lambda f: (_KIND_RANK[f[1]], fold(f[3]), -size[f[0][0]], f[0][0],
                                                         f[0][1] or ""))
        self._vocabulary: dict[str, int] = {}
        self._words: list[str] = []
        self._postings: list[list[int]] = []
        #: Per word of a city's name: that city's school names (a school is found by its name and city).
        self._context_postings: dict[int, list[int]] = {}
        #: Per word: the names it begins (one letter typed finds only names beginning with it).
        self._first_postings: dict[int, list[int]] = {}
        self._fields: list[_Field] = []
        city_words = {tenant.id: frozenset(self._word_id(word.text) for lang in LANGS
                                           for word in words(tenant.names.get(lang) or "")) for tenant in tenants}
        for entry, kind, lang, text in fields:
            tokens = tuple(self._word_id(word.text) for word in words(text))
            if not tokens:
                continue
            field_id = len(self._fields)
            context = city_words[entry[0]] if entry[1] is not None else frozenset()
            self._fields.append(_Field(entry, kind, lang, text, " ".join(self._words[t] for t in tokens), tokens,
                                       context))
            for token in dict.fromkeys(tokens):
                self._postings[token].append(field_id)
            self._first_postings.setdefault(tokens[0], []).append(field_id)
            for token in context:
                self._context_postings.setdefault(token, []).append(field_id)
        order = sorted(range(len(self._words)), key=self._words.__getitem__)
        self._sorted = [self._words[i] for i in order]
        self._sorted_ids = order
        grams: dict[str, list[int]] = {}
        for token, word in enumerate(self._words):
            if len(word) >= 3 and not word.isdigit():
                for gram in dict.fromkeys(_grams(word)):
                    grams.setdefault(gram, []).append(token)
        self._grams = grams
        self._short: dict[tuple[str, str | None], Results] = {}
        self._words_seen: dict[str, Mapping[int, _Match]] = {}

    def __len__(self) -> int:
        """How many names and codes are indexed."""
        return len(self._fields)

    @property
    def vocabulary_size(self) -> int:
        return len(self._words)

    def _word_id(self, word: str) -> int:
        token = self._vocabulary.get(word)
        if token is None:
            token = self._vocabulary[word] = len(self._words)
            self._words.append(word)
            self._postings.append([])
        return token

    # -- the query -------------------------------------------------------------------------------

    def search(self, query: str, *, lang: str | None = None, limit: int = 20) -> Results:
        """The best ``limit`` cities and schools for ``query``, best first.

        Results with fewer typos come first; among equals, names in ``lang`` (the page's
        language) are preferred, so one school's Finnish and English names do not compete.
        """
        query_words = [word.text for word in words(query[:MAX_QUERY])][:MAX_WORDS]
        folded = " ".join(query_words)
        if not query_words:
            return Results("", ())
        key = (folded, lang)
        short = len(folded) <= 2
        results = self._short.get(key) if short else None
        if results is None:
            matches = [self._word_matches(word) for word in query_words]
            results = self._rank(folded, matches, lang=lang, limit=max(limit, _SHORT_KEPT) if short else limit)
            if short:
                if len(self._short) >= _SHORT_CACHE:
                    self._short.clear()
                self._short[key] = results
        if len(results.hits) > limit:
            return dataclasses.replace(results, hits=results.hits[:limit], more=True)
        return results

    def _word_matches(self, word: str) -> Mapping[int, _Match]:
        """:meth:`_matches`, kept for words of 4 letters or more (as a person types on, the words
        before the one being typed stay the same); the kept ones are few, and forgotten all at once
        when :data:`_WORD_CACHE` are kept."""
        if len(word) < 4:
            return self._matches(word)
        found = self._words_seen.get(word)
        if found is None:
            if len(self._words_seen) >= _WORD_CACHE:
                self._words_seen.clear()
            found = self._words_seen[word] = self._matches(word)
        return found

    def _matches(self, word: str) -> dict[int, _Match]:
        """The index words ``word`` matches, by vocabulary id, each with its best way of matching."""
        found: dict[int, _Match] = {}
        exact = self._vocabulary.get(word)
        if exact is not None:
            found[exact] = _Match(100, "exact", len(word))
        if len(word) >= 5 and not word.isdigit():
            # A word and an ending: "vantaan" (genitive) finds "Vantaa", "tikkurilassa" finds "Tikkurila".
            for cut in (1, 2, 3):
                stem = self._vocabulary.get(word[:-cut])
                if stem is not None and stem not in found and len(word) - cut >= 4:
                    found[stem] = _Match(75 - 5 * cut, "stem", len(word) - cut)
        start = bisect.bisect_left(self._sorted, word)
        for index in range(start, min(start + MAX_EXPANSIONS, len(self._sorted))):
            candidate = self._sorted[index]
            if not candidate.startswith(word):
                break
            token = self._sorted_ids[index]
            if token not in found:
                found[token] = _Match(70 + (20 * len(word)) // len(candidate), "prefix", len(word))
        if word.isdigit():
            return found
        if len(word) >= 4:
            self._infixes(word, found)
        typos = allowed_typos(len(word))
        if typos:
            self._typos(word, typos, found)
        return found

    def _infixes(self, word: str, found: dict[int, _Match]) -> None:
        lists = [self._grams.get(gram) or [] for gram in _inner_grams(word)]
        if not lists or any(not posting for posting in lists):
            return
        lists.sort(key=len)
        candidates = set(lists[0][:MAX_EXPANSIONS * 4])
        for posting in lists[1:]:
            candidates.intersection_update(posting)
            if not candidates:
                return
        for token in sorted(candidates)[:MAX_EXPANSIONS]:
            if token in found:
                continue
            candidate = self._words[token]
            at = candidate.find(word)
            if at > 0:
                found[token] = _Match(45 + (10 * len(word)) // len(candidate), "infix", len(word), at)

    def _typos(self, word: str, typos: int, found: dict[int, _Match]) -> None:
        grams = list(dict.fromkeys(_grams(word)))
        counts = Counter(chain.from_iterable(self._grams.get(gram, ()) for gram in grams))
        # An edit changes at most 3 of a word's trigrams (q-gram lemma), a transposition 4.
        needed = max(1, len(grams) - 4 * typos)
        candidates = [token for token, shared in counts.most_common() if shared >= needed and token not in found]
        matched = 0
        for token in candidates[:MAX_VERIFIED]:
            candidate = self._words[token]
            whole = edit_distance(word, candidate, typos)
            start = prefix_distance(word, candidate, typos)
            options = [_Match(40 - 10 * (whole - 1), "typo", len(candidate))] if whole is not None else []
            if start is not None:           # the word still being typed: its beginning
                options.append(_Match(35 - 10 * (start - 1), "typo", min(len(word), len(candidate))))
            if not options:
                continue
            found[token] = max(options, key=lambda match: match.quality)
            matched += 1
            if matched >= _TYPOS_FOUND:
                break

    def _rank(self, folded: str, matches: Sequence[Mapping[int, _Match]], *, lang: str | None,
              limit: int) -> Results:
        if any(not found for found in matches):
            return Results(folded, ())
        several = len(matches) > 1      # only then may a word name the city of a school ("keskuskoulu vantaa")
        letter = len(folded) == 1       # a name beginning with it, not every name with a word beginning with it
        empty: list[int] = []

        def direct_postings(token: int) -> list[int]:
            return self._first_postings.get(token, empty) if letter else self._postings[token]

        def postings(token: int) -> Iterable[int]:
            direct = direct_postings(token)
            context = self._context_postings.get(token, empty) if several else empty
            return chain(direct, context) if context else direct

        def size(token: int) -> int:
            return len(direct_postings(token)) + (len(self._context_postings.get(token, empty)) if several else 0)

        # Every result is in the postings of every query word: go through the shortest.
        driver = min(range(len(matches)), key=lambda i: sum(size(token) for token in matches[i]))
        ordered = sorted(matches[driver].items(), key=lambda item: -item[1].quality)
        best: dict[tuple[str, str | None], tuple[tuple[int, int, int], list[tuple[int, _Match]]]] = {}
        seen: set[int] = set()
        capped = False
        for token, _match in ordered:
            for field_id in postings(token):
                if field_id in seen:
                    continue
                if len(seen) >= MAX_FIELDS:
                    capped = True
                    break
                seen.add(field_id)
                scored = self._score(field_id, matches, lang)
                if scored is None:
                    continue
                typos, score, marks = scored
                rank = (typos, -score, field_id)        # fewer typos, then a higher score, then the static order
                entry = self._fields[field_id].entry
                kept = best.get(entry)
                if kept is None or rank < kept[0]:
                    best[entry] = (rank, marks)
            if capped:
                break
        ranked = sorted(best.values(), key=lambda item: item[0])
        hits = tuple(self._hit(rank[2], -rank[1], marks) for rank, marks in ranked[:limit])
        return Results(folded, hits, more=capped or len(ranked) > limit)

    def _score(self, field_id: int, matches: Sequence[Mapping[int, _Match]], lang: str | None
               ) -> tuple[int, int, list[tuple[int, _Match]]] | None:
        """``(typos, score, marks)`` of a name for the query; ``None`` if a query word matches none of its words."""
        field = self._fields[field_id]
        tokens = field.tokens
        score = _KIND_BONUS[field.kind] + (_LANG_BONUS if lang is not None and field.lang == lang else 0)
        typos = 0
        marks: list[tuple[int, _Match]] = []
        positions = []
        for found in matches:
            chosen: tuple[int, _Match] | None = None
            for position, token in enumerate(tokens):
                match = found.get(token)
                if match is not None and (chosen is None or match.quality > chosen[1].quality):
                    chosen = (position, match)
            if chosen is None:
                # Not in the name: the name of the school's city, if the query has other words.
                city = max((m.quality for t, m in found.items() if t in field.context), default=None)
                if city is None or len(matches) == 1:
                    return None
                score += city - 20
                typos += any(m.how == "typo" for t, m in found.items() if t in field.context and m.quality == city)
                continue
            score += chosen[1].quality
            typos += chosen[1].how == "typo"
            positions.append(chosen[0])
            marks.append(chosen)
        if not positions:
            return None                                   # only the city matched: that is the city's own result
        if positions[0] == 0:
            score += 15                                   # the name begins with what was typed
        if positions == sorted(positions):
            score += 5                                    # in the order typed
        score += (10 * len(set(positions))) // len(tokens)  # how much of the name the query covers
        return typos, score, marks

    def _hit(self, field_id: int, score: int, marks: list[tuple[int, _Match]]) -> Hit:
        field = self._fields[field_id]
        original = words(field.text)
        spans = set()
        for position, match in marks:
            word = original[position]
            spans.add(word.span_of(match.at, match.length) if match.how == "infix" else word.span(match.length))
        tenant_id, school_code = field.entry
        return Hit(kind=field.kind, tenant_id=tenant_id, school_code=school_code, text=field.text,
                   lang=field.lang, marks=_merge(spans), score=score)


def _fields(tenants: Iterable[Tenant]) -> Iterable[tuple[tuple[str, str | None], str, str | None, str]]:
    """``(entry, kind, lang, text)`` of every name and code; one name per entry and kind for equal spellings."""
    for tenant in tenants:
        city: tuple[str, str | None] = (tenant.id, None)
        yield from _names(city, "city", tenant.names)
        yield from _names(city, "provider", tenant.provider_names)
        yield city, "municipality_code", None, tenant.municipality_code
        for school in tenant.schools:
            if school.active:
                entry = (tenant.id, school.code)
                yield from _names(entry, "school", school.names)
                yield entry, "school_code", None, school.code


def _names(entry: tuple[str, str | None], kind: str, names: Mapping[str, str]
           ) -> Iterable[tuple[tuple[str, str | None], str, str | None, str]]:
    spelled: set[str] = set()
    for lang in LANGS:
        name = names.get(lang) or ""
        key = fold(name)
        if key and key not in spelled:
            spelled.add(key)
            yield entry, kind, lang, name


def _grams(word: str) -> list[str]:
    """Trigrams of ``word`` with two marks before it, so that a word's beginning weighs most."""
    padded = "\x02\x02" + word
    return [padded[i:i + 3] for i in range(len(padded) - 2)]


def _inner_grams(word: str) -> list[str]:
    return list(dict.fromkeys(word[i:i + 3] for i in range(len(word) - 2)))


def _merge(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)
