"""BM25 keyword scores, so that names and rare words count in retrieval.

A sentence embedding places "Ada Lovelace at her desk" close to any portrait of a woman at a
desk; a keyword score rewards the caption that actually says "Lovelace". The retriever blends
`KeywordIndex.normalized_scores` (0..1) with the dense cosine.

Tokens (`tokenize`): lower-cased Unicode words and numbers ("9", "3.5", "f-16" -> "f16" plus
"f" and "16"), English stop-words dropped, a plural "s" folded, and Chinese / Japanese /
Korean runs split into overlapping character bigrams, so queries without spaces match.

Scoring is Okapi BM25 with the always-positive idf of Lucene:
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))
    score(d, q) = sum over distinct query terms t in d of
                  idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avglen))
Postings (term -> {document slot: tf}) make a query cost proportional to the postings of its
terms, not to the corpus: 100k captions answer in milliseconds.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter

_STOP_WORD_TEXT = """
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each either else
ever every few for from further had has have having he her here hers herself him himself his
how i if in into is it its itself just me more most my myself neither no nor not of off on
once only or other our ours ourselves out over own same shall she should so some such than
that the their theirs them themselves then there these they this those through to too under
until up upon very was we were what when where which while who whom whose why will with
within without would yet you your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())

# Scripts written without spaces between words (Lucene's CJK bigram set): Han ideographs,
# Hiragana, Katakana and Hangul syllables.
CJK = ("\u3040-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
       "\U00020000-\U0002ebef")


def _mark_ranges() -> str:
    """A regex class body of the combining marks in the Basic Multilingual Plane.

    Python's \\w leaves out marks such as Devanagari vowel signs, which would split words of
    many scripts; words may contain them.
    """
    ranges: list[tuple[int, int]] = []
    for code in range(0x10000):
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(f"\\u{start:04x}-\\u{end:04x}" for start, end in ranges)


_MARKS = _mark_ranges()
_WORD = rf"[\w{_MARKS}]+"
# A chunk: a number with decimals or thousands separators, or word characters (any script,
# CJK and "_" included) joined by hyphens or apostrophes. Chunks holding CJK or "_" are split
# further by _PIECE.
_CHUNK = re.compile(rf"\d+(?:[.,]\d+)+|{_WORD}(?:['’\-‐]{_WORD})*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)+")
_CJK_OR_UNDERSCORE = re.compile(rf"[{CJK}_]")
_CJK_CHAR = re.compile(rf"[{CJK}]")
_PIECE = re.compile(rf"[{CJK}]+|[^{CJK}_]+")
_HYPHENS = re.compile(r"[\-‐]")
_APOSTROPHES = re.compile(r"['’]")
_JOINERS = "'’-‐"


def tokenize(text: str) -> list[str]:
    """The keyword terms of a text, in order (duplicates kept: they are term frequencies).

    Words are lower-cased after NFKC normalisation (full-width letters become ASCII), stop
    words are dropped and plurals folded (`fold_plural`). A hyphenated word gives its joined
    form and its parts ("F-16" -> "f16", "f", "16"); a possessive loses its "'s". Numbers keep
    decimals and drop thousands separators ("1,000" -> "1000"). CJK runs give overlapping
    bigrams ("长城在中国" -> "长城", "城在", "在中", "中国"); a lone CJK character is kept as is.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    terms: list[str] = []
    for chunk in _CHUNK.findall(text):
        if chunk.isascii() and chunk.isalnum():  # the common case, kept fast
            if chunk not in STOP_WORDS:
                terms.append(fold_plural(chunk))
        else:
            terms += _chunk_terms(chunk)
    return terms


def _chunk_terms(chunk: str) -> list[str]:
    """Terms of a chunk that is not a plain ASCII word: numbers, joined words, CJK runs."""
    if _NUMBER.fullmatch(chunk):
        return [chunk.replace(",", "")]  # "1,000.5" -> "1000.5"
    if not _CJK_OR_UNDERSCORE.search(chunk):
        return _word_terms(chunk)
    terms: list[str] = []
    for piece in _PIECE.findall(chunk):
        if _CJK_CHAR.match(piece):
            terms += cjk_bigrams(piece)
        elif piece.strip(_JOINERS):
            terms += _word_terms(piece.strip(_JOINERS))
    return terms


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping character pairs of a CJK run; a single character stands alone.

    Chinese and Japanese put no spaces between words, and most words are two characters, so
    pairs match words without a dictionary (the approach of Lucene's CJK analyzer).
    """
    if len(run) == 1:
        return [run]
    return [run[index:index + 2] for index in range(len(run) - 1)]


def fold_plural(word: str) -> str:
    """Drop a plural "s" from words longer than 3 letters ("rockets" -> "rocket"), not "ss".

    Deliberately crude (no stemmer): the same rule runs on captions and queries, so "bridges"
    and "bridge" meet even where the folded form is not a real word.
    """
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _word_terms(token: str) -> list[str]:
    """Terms of one word token: possessive and apostrophes removed, hyphen parts expanded."""
    token = re.sub(r"['’]s$", "", token)
    token = _APOSTROPHES.sub("", token)
    parts = [part for part in _HYPHENS.split(token) if part]
    words = ["".join(parts)] + (parts if len(parts) > 1 else [])
    return [fold_plural(word) for word in words if word not in STOP_WORDS]


class KeywordIndex:
    """An in-memory BM25 index of id -> text, updated incrementally.

    `fit` rebuilds it, `upsert` / `remove` change one document (statistics follow), `scores`
    gives raw BM25 and `normalized_scores` a 0..1 version for blending. Safe to use from
    several threads (one lock).
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        """`k1` sets how fast repeated terms saturate, `b` how much long texts are discounted."""
        if k1 < 0:
            raise ValueError(f"k1={k1} must be 0 or more (1.2 is the usual value)")
        if not 0 <= b <= 1:
            raise ValueError(f"b={b} must be between 0 and 1 (0.75 is the usual value)")
        self.k1 = k1
        self.b = b
        self._lock = threading.RLock()
        self._clear()

    def _clear(self) -> None:
        self._postings: dict[str, dict[int, int]] = {}
        self._slot_of: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._lengths: list[int] = []
        self._terms: list[Counter[str] | None] = []
        self._free: list[int] = []
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._slot_of

    def fit(self, ids: list[str], texts: list[str]) -> None:
        """Replace the whole index with these documents (ids must be unique)."""
        if len(ids) != len(texts):
            raise ValueError(f"fit() got {len(ids)} ids but {len(texts)} texts: pass one "
                             "text per id")
        duplicates = [doc_id for doc_id, count in Counter(ids).items() if count > 1]
        if duplicates:
            raise ValueError(f"fit() got duplicate ids {duplicates[:5]}: give each document "
                             "one entry")
        with self._lock:
            self._clear()
            for doc_id, text in zip(ids, texts):
                self._add(doc_id, text)

    def upsert(self, doc_id: str, text: str) -> None:
        """Add a document, or replace the text of an existing one."""
        with self._lock:
            self._discard(doc_id)
            self._add(doc_id, text)

    def remove(self, doc_id: str) -> bool:
        """Drop a document; returns whether it was there (an unknown id is not an error)."""
        with self._lock:
            return self._discard(doc_id)

    def _add(self, doc_id: str, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"the text of {doc_id!r} is {type(text).__name__}, not str")
        terms = Counter(tokenize(text))
        slot = self._free.pop() if self._free else len(self._ids)
        if slot == len(self._ids):
            self._ids.append(None)
            self._lengths.append(0)
            self._terms.append(None)
        length = sum(terms.values())
        self._ids[slot], self._lengths[slot], self._terms[slot] = doc_id, length, terms
        self._slot_of[doc_id] = slot
        self._total_length += length
        for term, count in terms.items():
            self._postings.setdefault(term, {})[slot] = count

    def _discard(self, doc_id: str) -> bool:
        slot = self._slot_of.pop(doc_id, None)
        if slot is None:
            return False
        for term in self._terms[slot] or ():
            postings = self._postings[term]
            del postings[slot]
            if not postings:
                del self._postings[term]
        self._total_length -= self._lengths[slot]
        self._ids[slot], self._lengths[slot], self._terms[slot] = None, 0, None
        self._free.append(slot)
        return True

    def idf(self, term: str) -> float:
        """Lucene's BM25 idf of a term: ln(1 + (N - df + 0.5) / (df + 0.5)), always > 0."""
        with self._lock:
            count = len(self._slot_of)
            df = len(self._postings.get(term, ()))
            return math.log(1.0 + (count - df + 0.5) / (df + 0.5))

    def scores(self, query: str, ids: list[str] | None = None) -> dict[str, float]:
        """Raw BM25 scores of the query.

        Without `ids`: every document sharing at least one term with the query (others score
        0 and are left out). With `ids`: exactly those ids, 0.0 for ones that share no term
        or are not in the index (candidates from another stage need no filtering first).
        Each distinct query term counts once.
        """
        terms = _distinct(tokenize(query))
        with self._lock:
            slot_scores = self._slot_scores(terms, ids)
            if ids is None:
                return {self._ids[slot]: score for slot, score in slot_scores.items()}
            return {doc_id: slot_scores.get(self._slot_of.get(doc_id, -1), 0.0)
                    for doc_id in ids}

    def normalized_scores(self, query: str, ids: list[str] | None = None) -> dict[str, float]:
        """BM25 scaled to 0..1 for blending with a cosine similarity; same keys as `scores`.

        The scale is the score of a reference hit: a document of average length containing
        each query term once, whose BM25 is exactly the sum of the terms' idf (the tf factor
        is 1 there). Terms no document contains are left out of that sum: they cannot tell
        documents apart. So a typical caption holding every query word scores 1, one holding
        the rarest words scores more than one holding only common ones, one holding none 0.
        Shorter or repetitive hits would exceed the reference; they are capped at 1.
        """
        terms = _distinct(tokenize(query))
        with self._lock:
            reference = sum(self.idf(term) for term in terms if term in self._postings)
            raw = self.scores(query, ids)
        if reference <= 0:
            return dict.fromkeys(raw, 0.0)
        return {doc_id: min(1.0, score / reference) for doc_id, score in raw.items()}

    def rare_matches(self, query: str, max_df: int = 2000) -> list[str]:
        """Documents holding a query term that at most `max_df` documents hold.

        Names and rare words are what a keyword match adds to an embedding; common words
        would match a large share of a big library. Scoring these documents plus another
        stage's candidates (`normalized_scores(query, ids=...)`) keeps the cost bounded.
        """
        found: set[int] = set()
        with self._lock:
            for term in _distinct(tokenize(query)):
                postings = self._postings.get(term)
                if postings and len(postings) <= max_df:
                    found.update(postings)
            return [self._ids[slot] for slot in found]

    def _slot_scores(self, terms: list[str], ids: list[str] | None) -> dict[int, float]:
        """BM25 per document slot, summed over postings (or over the candidate slots)."""
        count = len(self._slot_of)
        if count == 0 or not terms:
            return {}
        average = self._total_length / count if self._total_length else 1.0
        k1, b, lengths = self.k1, self.b, self._lengths
        candidates = None if ids is None else {self._slot_of[i] for i in ids
                                                if i in self._slot_of}
        totals: dict[int, float] = {}
        for term in terms:
            postings = self._postings.get(term)
            if not postings:
                continue
            weight = self.idf(term) * (k1 + 1)
            if candidates is not None and len(candidates) < len(postings):
                pairs = [(slot, postings[slot]) for slot in candidates if slot in postings]
            else:
                pairs = postings.items()
            for slot, tf in pairs:
                if candidates is not None and slot not in candidates:
                    continue
                norm = k1 * (1 - b + b * lengths[slot] / average)
                totals[slot] = totals.get(slot, 0.0) + weight * tf / (tf + norm)
        return totals


def _distinct(terms: list[str]) -> list[str]:
    """Terms without repeats, in first-seen order."""
    return list(dict.fromkeys(terms))
