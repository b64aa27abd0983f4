"""Text as the city search compares it: folded words, and bounded edit distances.

* :func:`fold` lowers case and removes diacritics, so ``ä`` and ``å`` compare as ``a``, ``ö``
  as ``o``, ``é`` as ``e`` (Unicode NFKD, combining marks dropped), with ``ß`` → ``ss``,
  ``æ`` → ``ae``, ``ø`` → ``o`` and ``đ``/``ł`` → ``d``/``l``, which NFKD leaves alone.
  Anything that is neither a letter nor a digit separates words.
* :func:`words` splits a text into folded words and remembers where each character of a
  word came from in the original text, so a match can be marked in what the person reads.
* :func:`edit_distance` and :func:`prefix_distance` are the optimal string alignment
  distance (Levenshtein with adjacent transpositions, each edit costing 1) of two words, and
  of a word and the closest prefix of another, computed only inside a band of ``limit``
  cells around the diagonal and given up as soon as every cell of a row exceeds ``limit``:
  ``O(len × limit)`` steps, never more.

No regular expression is used anywhere here: the cost of folding a query is one pass
over its characters.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from functools import lru_cache

_SPECIAL = {"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "đ": "d", "ł": "l", "þ": "th", "ı": "i"}


@lru_cache(maxsize=4096)
def fold_char(char: str) -> str:
    """One character folded: lower case, without diacritics; ``""`` for a mark, ``" "`` for a separator."""
    lowered = char.casefold()
    out = []
    for piece in unicodedata.normalize("NFKD", lowered):
        if unicodedata.combining(piece):
            continue
        piece = _SPECIAL.get(piece, piece)
        out.append(piece if piece.isalnum() else " ")
    return "".join(out)


def fold(text: str) -> str:
    """``text`` folded and its words separated by single spaces (``"Jyväskylä"`` → ``"jyvaskyla"``)."""
    return " ".join("".join(fold_char(char) for char in text).split())


@dataclasses.dataclass(frozen=True)
class Word:
    """A folded word and, for each of its characters, the span of the original text it came from."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def span(self, length: int) -> tuple[int, int]:
        """The original text's span of this word's first ``length`` folded characters."""
        length = max(1, min(length, len(self.text)))
        return self.starts[0], self.ends[length - 1]

    def span_of(self, start: int, length: int) -> tuple[int, int]:
        """The original text's span of ``length`` folded characters from ``start``."""
        end = min(start + length, len(self.text))
        return self.starts[start], self.ends[end - 1]


def words(text: str) -> list[Word]:
    """The folded words of ``text`` with their origins (``"Myyrmäen koulu"`` → ``myyrmaen``, ``koulu``)."""
    out: list[Word] = []
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for index, char in enumerate(text):
        folded = fold_char(char)
        for piece in folded:
            if piece == " ":
                if chars:
                    out.append(Word("".join(chars), tuple(starts), tuple(ends)))
                    chars, starts, ends = [], [], []
            else:
                chars.append(piece)
                starts.append(index)
                ends.append(index + 1)
    if chars:
        out.append(Word("".join(chars), tuple(starts), tuple(ends)))
    return out


def allowed_typos(length: int) -> int:
    """How many edits a query word of ``length`` characters may differ by: 0 below 4, 1 up to 7, then 2."""
    if length < 4:
        return 0
    return 1 if length < 8 else 2


def _rows(query: str, word: str, limit: int, columns: int) -> list[int] | None:
    """The last row of the banded alignment table of ``query`` against ``word[:columns]``.

    Cells outside the band (``|i - j| > limit``) count as ``limit + 1``; ``None`` when a row
    has no cell within ``limit`` (no alignment can end within it).
    """
    over = limit + 1
    previous_previous: list[int] | None = None
    previous = [j if j <= limit else over for j in range(columns + 1)]
    for i in range(1, len(query) + 1):
        current = [over] * (columns + 1)
        if i <= limit:
            current[0] = i
        low, high = max(1, i - limit), min(columns, i + limit)
        best = current[0]
        qc = query[i - 1]
        for j in range(low, high + 1):
            wc = word[j - 1]
            cost = 0 if qc == wc else 1
            value = min(previous[j - 1] + cost, previous[j] + 1, current[j - 1] + 1)
            if (previous_previous is not None and j > 1 and qc == word[j - 2] and query[i - 2] == wc
                    and qc != wc):
                value = min(value, previous_previous[j - 2] + 1)
            current[j] = value if value <= limit else over
            best = min(best, current[j])
        if best > limit:
            return None
        previous_previous, previous = previous, current
    return previous


def edit_distance(query: str, word: str, limit: int) -> int | None:
    """The OSA distance of ``query`` and ``word`` if it is at most ``limit``, else ``None``."""
    if abs(len(query) - len(word)) > limit:
        return None
    row = _rows(query, word, limit, len(word))
    if row is None or row[len(word)] > limit:
        return None
    return row[len(word)]


def prefix_distance(query: str, word: str, limit: int) -> int | None:
    """The least OSA distance of ``query`` to a prefix of ``word`` if at most ``limit``, else ``None``.

    What a word being typed (``"tikurila"``) is from the word it is on its way to
    (``"tikkurilan"``): 1.
    """
    if len(word) < len(query) - limit:
        return None
    columns = min(len(word), len(query) + limit)
    row = _rows(query, word, limit, columns)
    if row is None:
        return None
    best = min(row[max(0, len(query) - limit):columns + 1])
    return best if best <= limit else None
