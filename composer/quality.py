"""What a reader would object to in generated text, measured without a model (en and zh).

Pure functions over strings: sentence splitting, meta-commentary (text about the text, chat
filler, apologies), leaked prompt fragments, repeated sentences and near-duplicate paragraphs,
distinct-n, sentences cut off mid-way, language purity, upper-case gibberish, outline titles
that are not titles, and LongWriter's length score. check_paragraph() bundles the paragraph
checks a section writer runs before keeping a paragraph; relevance needs an embedder
(models/embed.py), passed in, so that this module stays model-free.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from composer.outline_check import META_ITEMS

NEAR_DUPLICATE = 0.8  # character 5-gram Jaccard from which two sentences count as repeated
NEAR_DUPLICATE_PARAGRAPH = 0.6  # the same for whole paragraphs ("almost word for word")
MIN_REPEAT_CHARS = 20  # shorter sentences ("Yes.", "P.S.") are not counted as repeats
MIN_REPEAT_CHARS_ZH = 8  # the same for Chinese, where a character carries a word's meaning
MIN_PURITY = 0.9  # share of words in the requested language a paragraph must reach
MIN_DISTINCT_2 = 0.5  # distinct-2 a paragraph must reach (looping text falls far below)
# Cosine similarity (all-MiniLM-L6-v2) from which a paragraph counts as on the subject.
# bench/bench_paragraph_relevance.py (own brief vs other briefs): 0.2 passes 95.7% of own
# paragraphs and rejects 90.5% of foreign ones; 0.3 scores a little better on model text
# (92.9% / 98.0%) but fails short on-topic prose a person wrote (a lighthouse keepers'
# paragraph scores 0.25 against "Lighthouses of Norway"), and a failed check costs a rewrite.
MIN_RELEVANCE = 0.2
FRAGMENT_MIN_CHARS = {"en": 16, "zh": 6}  # prompt fragments shorter than this are not matched

_SENTENCE = re.compile(r"[^.!?。！？…]*(?:[.!?。！？…]+[\"'”’)\]」』]*|$)")
_END = re.compile(r"[.!?。！？…][\"'”’)\]」』*]*$")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "e.g.", "i.e.", "etc.", "vs.", "No.",
                  "U.S.", "P.S.", "a.m.", "p.m.")


def is_chinese(language: str) -> bool:
    return language.startswith("zh")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, split after . ! ? … and 。！？ (closing quotes stay attached);
    common abbreviations (Dr., e.g., U.S.) and decimals do not end a sentence."""
    protected = text
    for number, abbreviation in enumerate(_ABBREVIATIONS):
        protected = protected.replace(abbreviation, abbreviation.replace(".", f"\x00{number}\x01"))
    protected = re.sub(r"(\d)\.(\d)", "\\1\x02\\2", protected)
    sentences = []
    for match in _SENTENCE.finditer(protected):
        sentence = match.group(0).strip()
        if not sentence:
            continue
        sentence = re.sub(r"\x00\d+\x01", ".", sentence).replace("\x02", ".")
        sentences.append(sentence)
    return sentences


# -- meta-commentary ----------------------------------------------------------------------

_WRITING = r"(?:article|blog post|essay|write-up|writeup|piece of writing)"
_META_EN = [
    # The text about itself: "this article", "the blog post", "the first section titled ..."
    rf"\b(?:this|the|my|our|your|next|following|previous|whole|entire) {_WRITING}s?\b",
    r"\b(?:this|next|following|previous|final|last|first|above|below) (?:section|paragraph|"
    r"outline)s? (?:titled|called|named|is about|will|of (?:the|this) (?:article|post|essay))",
    r"^\s*(?:in )?(?:this|the next|the following|the previous) (?:section|paragraph|outline)\b",
    r"\bthis (?:post|blog|article|piece|essay|introduction|overview|summary|write-up) "
    r"(?:will|is|was|has|covers|explores|discusses|provides|goes|contains|offers|aims|focuses|"
    r"highlights|emphasi[sz]es|examines|looks|describes|shows|showcases|delves|presents)\b",
    r"\bthis is the (?:first|second|third|last|next|final|opening|closing) (?:paragraph|"
    r"section|part|sentence|chapter)\b",
    # Edit-speak: the model describing its rewrite instead of writing it
    r"\b(?:revised|rewritten|edited|improved|updated|original) (?:sentence|version|paragraph|"
    r"text|piece|message)s?\b|\bhere(?:'s| is) (?:a|the|my) (?:rewritten|revised|new|edited)\b",
    r"\bI (?:made|added|removed|changed|rephrased|replaced|used|included|corrected) (?:several |"
    r"some |a few |the |minor |small |two |three )?(?:changes|edits|tweaks|adjustments|revisions|"
    r"modifications|improvements|commas|words|sentences?|phrases?|paragraphs?)\b|\bto "
    r"(?:improve|enhance) (?:its |the |overall )?(?:clarity|readability|grammar|flow|style)\b|"
    r"\bwith minor edits\b|\bmake it (?:flow|read|sound) (?:better|smoother|more)\b|"
    r"^\s*(?:added|changed|removed|replaced) [\"“']",
    r"\bthe (?:first|second|third|next|last|final|opening|closing) (?:paragraph|sentence)s? of "
    r"(?:the |this |each |every )?(?:section|article|essay|post|text)\b",
    r"\b(?:in|for) this example\b|\bwe have (?:outlined|included|written|provided)\b",
    r"\bI(?: am|'m) (?:delighted|happy|excited|thrilled|glad|pleased) to (?:share|present|"
    r"introduce|write|bring)\b|\bI hope to inspire\b|\bin this (?:piece|post|write-up)\b",
    r"\bthis is an? (?:introduction|overview|summary|great example|example of how|post|blog|"
    r"guide to the topic)\b",
    r"\b(?:make|making|create|creating|write|writing) (?:the |your |this |more |engaging )?"
    r"content\b|\bengaging content\b|\b(?:use|take) this as (?:your|a|the) main point\b",
    r"\b(?:the|this|my|our) (?:story|article|post|essay|piece|text|section|guide|topic) (?:is|was|"
    r"has been|have been) (?:written|edited|structured|organi[sz]ed|divided|formatted)\b",
    r"\b(?:written|edited) (?:in a (?:clear|concise|simple|engaging)|to make it)\b",
    r"\bsets? the tone for the rest of\b",
    r"\b(?:a|this|the|our) (?:new )?piece (?:adds|builds|continues|expands|explores|delves)\b|"
    r"\bthe existing narrative\b",
    r"\b(?:from|throughout|through) this (?:piece|post|write-up)\b(?! of)|\breaders "
    r"(?:will|can|should|may) (?:take away|walk away)\b",
    # ... with adjectives in between: "this amazing blog post", "This is a comprehensive and
    # informative piece that provides", "The content includes", "We also touched upon"
    rf"\bthis (?:[a-z-]+,? ){{1,3}}(?:{_WRITING}|post|piece|write-up)s?\b(?! of)",
    r"\bthis is an? (?:[a-z-]+,? ){1,3}(?:piece|post|overview|introduction|summary)\b(?! of)",
    r"\bthe content (?:includes|covers|provides|offers|contains|explores)\b|\b(?:we|I) "
    r"(?:also |have |briefly )?touched (?:up)?on\b",
    # Reviewing the text instead of writing it: "This is an excellent article", "The first
    # paragraph covers ...", "The paragraphs are well-structured", "paragraph 1 about"
    r"\b(?:an?|this|the) (?:excellent|great|good|well[- ]written|well[- ]structured|strong|"
    r"compelling|engaging|informative) (?:article|essay|blog post|paragraph|piece of writing)\b",
    r"\bthe (?:first|second|third|fourth|next|last|final|opening|closing|following|previous|"
    r"above) (?:paragraphs?|sentences?) (?:covers?|focus(?:es)?|provides?|sets?|is|are|adds?|"
    r"introduces?|describes?|explains?|discusses?|begins?|starts?|ends?|concludes?|gives?|"
    r"offers?)\b",
    r"\bthe (?:first|second|third|fourth|next|last|final|opening|closing|following|previous) "
    r"sections? (?:covers?|focus(?:es)?|provides?|introduces?|describes?|explains?|"
    r"discusses?|offers?)\b",
    r"\bthe (?:paragraphs|sentences) (?:are|were|is)\b|\bparagraph \d+\b|\bthe paragraph (?:is|was|"
    r"covers|focuses|explores|discusses|describes|provides|introduces|delves)\b",
    rf"\bI (?:started|began|ended|opened|closed|wrote|have written|will write|am going to "
    rf"write|'ll write|tried to write)\b[^.!?]{{0,30}}\b(?:section|paragraph|introduction|"
    rf"conclusion|outline|title|{_WRITING})",
    r"\b(?:you|the user) (?:mentioned|asked for|requested|provided|gave me|have given)\b",
    r"^[\s\"'“]*(?:here(?: is| are|'s|’s)|below (?:is|are)) (?:the|a|an|my|your|some)\b",
    r"\bthis concludes\b|\bthat concludes\b|\bin this (?:article|post|essay|guide|section)"
    r",? (?:we|i|you) (?:will|'ll|are going to|shall)\b",
    # Chat filler and sign-offs
    r"\bi hope (?:this|that|you (?:found|enjoy|enjoyed|find))\b|\bhope (?:this|it|that) "
    r"(?:helps|was helpful)\b",
    r"\b(?:this|the above|the following|the previous|your) sentences?\b",
    r"\blet me know\b|\bfeel free to\b|\b(?:do not|don't|dont) hesitate\b",
    r"\bif you have any (?:other |further |more )?(?:questions|comments|feedback|suggestions)",
    r"^\s*happy [a-z]+(?: [a-z]+)?\s*!+\s*$",
    r"^\s*p\.\s?s\.",
    r"\bthanks? (?:you )?for reading\b|\bstay tuned\b|\blet'?s dive in\b|\bhappy reading\b",
    r"^[\s\"'“]*(?:sure|certainly|of course|absolutely)\s*[!,.]|\bi'?d be (?:happy|glad) to "
    r"help\b",
    # The model about itself, and apologies
    r"\bas an? (?:ai|artificial intelligence|language model|assistant)\b",
    r"\bi(?:'m| am) (?:sorry|an ai|a language model|unable to|not able to)\b",
    r"\bi apologi[sz]e\b|\bmy apologies\b|\bsorry,? but\b",
]
_META_ZH = [
    r"希望(?:这|本|以上)?(?:篇|些|个)?(?:文章|内容|回答|信息)?对(?:你|您|大家)有(?:所)?帮助",
    r"本文|本篇|这篇文章|这篇博客|该文章|本节|本部分|下一部分|上一部分",
    r"以上就是|以下是|下面是|如下所示",
    r"如果(?:你|您)(?:还)?有任何(?:问题|疑问|建议)|欢迎(?:在评论区)?留言|请随时",
    r"感谢(?:您|你|大家)?(?:的)?阅读|谢谢(?:您|你|大家)?(?:的)?阅读",
    r"作为(?:一个|一名)?(?:AI|人工智能|语言模型|助手)",
    r"(?:很|非常)?抱歉|对不起，我",
    r"接下来(?:我们)?将|我(?:将|会)(?:为你|为您)?(?:写|介绍)",
    r"提纲|小标题|要点[:：]",
]
_META_EN_RE = [re.compile(pattern, re.I) for pattern in _META_EN]
_META_ZH_RE = [re.compile(pattern, re.I) for pattern in _META_ZH]


def meta_sentences(text: str, language: str = "en") -> list[str]:
    """Sentences that talk about the text, the writer or the reader's questions instead of the
    subject: self-reference, chat filler ("I hope this helps", "Happy gardening!", "P.S."),
    sign-offs ("This concludes ..."), apologies and "As an AI". Both languages' patterns are
    applied, since a model may answer a zh brief in English."""
    patterns = _META_EN_RE + _META_ZH_RE
    return [sentence for sentence in split_sentences(text)
            if any(pattern.search(sentence) for pattern in patterns)]


# -- prompt leakage ------------------------------------------------------------------------

_LEAK_MARKERS = re.compile(
    r"<\s*/?\s*Seg\d*>?|\[\s*ArticleImg_|key points\s*[:：]|section headings?|list of sections|"
    r"现在请写|要点[:：]|paragraph\(s\)|<\|?(?:im_start|im_end|system|user|assistant|endoftext)\|?>|"
    r"^\s*(?:system|user|assistant)\s*[:：]|</?[a-z][a-z0-9]*(?:\s+[^<>]*)?/?>|!\[[^\]]*\]\(|"
    r"^\s*#{1,6}\s|\*\*[^*]+\*\*|https?://", re.I | re.M)


def _prompt_fragments() -> list[str]:
    """Literal pieces of every prompt template this app sends (composer/prompts.py and
    composer/edit_prompts.py), long enough that prose would not repeat them by chance."""
    from composer import edit_prompts, prompts

    templates: list[str] = list(prompts.SYSTEM.values())
    for module in (prompts, edit_prompts):
        for value in vars(module).values():
            if isinstance(value, dict):
                for inner in value.values():
                    if isinstance(inner, dict):
                        templates.extend(v for v in inner.values() if isinstance(v, str))
                    elif isinstance(inner, str):
                        templates.append(inner)
    fragments = set()
    for template in templates:
        for piece in re.split(r"\{[a-z_]+\}|\n|“|”|\"|(?<=[.?!])\s+|[。？！]", template):
            piece = piece.strip(" .,:;：，。、（）()")
            chinese = bool(_CJK.search(piece))
            if len(piece) >= FRAGMENT_MIN_CHARS["zh" if chinese else "en"]:
                fragments.add(piece.lower())
    return sorted(fragments, key=len, reverse=True)


_FRAGMENTS: list[str] | None = None


def leaked_prompt(text: str) -> list[str]:
    """Pieces of prompt or markup in `text`: fragments of this app's prompts, segment and image
    tags ("<Seg", "[ArticleImg_"), "Key points:", "Section Headings", "现在请写", chat role
    tags, HTML and Markdown markup, URLs. Empty when the text is clean prose."""
    global _FRAGMENTS
    if _FRAGMENTS is None:
        _FRAGMENTS = _prompt_fragments()
    found = [match.group(0).strip() for match in _LEAK_MARKERS.finditer(text)]
    lowered = text.lower()
    found += [fragment for fragment in _FRAGMENTS if fragment in lowered]
    return list(dict.fromkeys(found))


# -- repetition ----------------------------------------------------------------------------

def _normalise(text: str) -> str:
    drop = str.maketrans("", "", string.punctuation + "，。！？；：、“”‘’（）《》…")
    return " ".join(text.lower().translate(drop).split())


def _shingles(text: str, n: int = 5) -> set[str]:
    text = _normalise(text)
    return {text[i:i + n] for i in range(max(1, len(text) - n + 1))}


def jaccard(a: str, b: str) -> float:
    """Character 5-gram Jaccard similarity of two texts after normalisation (0..1)."""
    first, second = _shingles(a), _shingles(b)
    return len(first & second) / len(first | second) if first | second else 0.0


def _long_enough(normalised: str) -> bool:
    """Whether a sentence is long enough that repeating it is noticed (en: 20 characters,
    zh: 8 characters)."""
    limit = MIN_REPEAT_CHARS_ZH if _CJK.search(normalised) else MIN_REPEAT_CHARS
    return len(normalised) >= limit


def repeated_sentences(paragraphs: list[str], earlier: Iterable[str] = ()) -> list[str]:
    """Sentences of `paragraphs` that repeat one before them (in them or in `earlier`):
    identical after normalisation, or character 5-gram Jaccard >= NEAR_DUPLICATE."""
    seen: list[tuple[str, set[str]]] = []
    for paragraph in earlier:
        for sentence in split_sentences(paragraph):
            if _long_enough(_normalise(sentence)):
                seen.append((_normalise(sentence), _shingles(sentence)))
    repeats = []
    for paragraph in paragraphs:
        for sentence in split_sentences(paragraph):
            norm = _normalise(sentence)
            if not _long_enough(norm):
                continue
            grams = _shingles(sentence)
            if any(norm == other or len(grams & shingles) / len(grams | shingles)
                   >= NEAR_DUPLICATE for other, shingles in seen):
                repeats.append(sentence)
            seen.append((norm, grams))
    return repeats


def near_duplicate_paragraphs(paragraphs: list[str]) -> list[tuple[int, int]]:
    """(earlier, later) index pairs of paragraphs that are almost the same text
    (character 5-gram Jaccard >= NEAR_DUPLICATE_PARAGRAPH)."""
    grams = [_shingles(paragraph) for paragraph in paragraphs]
    pairs = []
    for later in range(len(paragraphs)):
        for earlier in range(later):
            union = grams[earlier] | grams[later]
            if union and len(grams[earlier] & grams[later]) / len(union) >= \
                    NEAR_DUPLICATE_PARAGRAPH:
                pairs.append((earlier, later))
                break
    return pairs


def tokens(text: str) -> list[str]:
    """Lower-cased words, each CJK character counting as one token."""
    return re.findall(r"[\u4e00-\u9fff]|[a-z0-9]+(?:'[a-z]+)?", text.lower())


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct-n: unique n-grams over all n-grams of `text` (1.0: no repeated n-gram;
    0.0 when the text has fewer than n tokens)."""
    words = tokens(text)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


# -- completeness, language, gibberish, length ----------------------------------------------

def ends_mid_sentence(paragraph: str) -> bool:
    """Whether a paragraph stops before its last sentence ends ("I'm sure many of you")."""
    text = paragraph.strip()
    return bool(text) and not _END.search(text)


def language_purity(text: str, language: str) -> float:
    """Share of the text's words that are in `language` (a CJK character counts as a word in
    zh, a Latin-letter word in en); 0.0 for text without words."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN_WORD.findall(_CJK.sub(" ", text)))
    if cjk + latin == 0:
        return 0.0
    return (cjk if is_chinese(language) else latin) / (cjk + latin)


def caps_gibberish(text: str) -> bool:
    """Whether the text is largely upper-case run-on tokens ("BEGINNINGNEXT: ... SEGMENTED
    BREAKFAST: HELPERED THE TRANSITION"), not prose with a few acronyms (NASA, UNESCO)."""
    words = re.findall(r"[A-Za-z]{2,}", text)
    caps = [word for word in words if word.isupper()]
    if any(len(word) >= 12 for word in caps):
        return True
    return len(caps) >= 4 and len(caps) >= 0.3 * len(words)


def length_score(target: int, actual: int) -> float:
    """LongWriter's S_l (arXiv 2408.07055): 100 * (1 - (a/t - 1) / 3) when the output is
    longer than asked, else 100 * (1 - (t/a - 1) / 2), clipped to 0..100."""
    if target <= 0 or actual <= 0:
        return 0.0
    if actual > target:
        score = 100 * (1 - (actual / target - 1) / 3)
    else:
        score = 100 * (1 - (target / actual - 1) / 2)
    return max(0.0, min(100.0, score))


# -- outline titles ------------------------------------------------------------------------

_META_TITLES = META_ITEMS  # one list: what the planner rejects is what the eval counts
_DATE = re.compile(r"^[\d\s\-/.:年月日号,，]+$")


def title_problem(title: str, instruction: str = "") -> str | None:
    """Why `title` is not a usable article or section title, or None: empty, markup or URL,
    a bare date or number, a meta title ("Key Points", "Section Headings"), a copy of the
    instruction. "Introduction" is a fine title (its position is checked by outline_problems)."""
    text = title.strip()
    if not text:
        return "empty title"
    if re.search(r"</?[a-z][^>]*>|&[a-z]+;|https?://|!\[|\]\(|^#|\*\*", text, re.I):
        return f"markup or URL in title {text!r}"
    if _DATE.match(text):
        return f"title {text!r} is a date or number, not a subject"
    bare = _normalise(re.sub(r"^(?:section|part|第)\s*\d+\s*[:：.、部分]?", "", text, flags=re.I))
    if bare in _META_TITLES or bare.rstrip("s") in _META_TITLES:
        return f"title {text!r} describes the outline, not the subject"
    if instruction and len(bare) > 20 and (
            bare == _normalise(instruction) or jaccard(bare, instruction) >= NEAR_DUPLICATE):
        return f"title {text!r} copies the instruction"
    return None


_IMPERATIVE = re.compile(r"^\s*(?:please\s+)?(?:write|compose|create|draft|explain|describe|"
                        r"give|tell|make|produce|prepare|list|summari[sz]e)\b|^\s*(?:请|写|为)",
                        re.I)


def looks_like_instruction(text: str) -> bool:
    """Whether `text` asks for an article ("Write a news story about ...") rather than being
    a title; an article titled with a title-like instruction is fine, a copied request not."""
    return bool(_IMPERATIVE.match(text)) or text.strip().endswith((".", "。"))


_OPENINGS = {"introduction", "intro", "引言", "前言", "简介", "导言"}


def outline_problems(title: str, sections: list[tuple[str, list[str]]],
                     instruction: str = "") -> list[str]:
    """Problems of an outline: its title's and every section title's title_problem(), meta
    key points ("Section Headings:"), duplicate titles, an "Introduction" after the first
    section. Empty for a valid outline."""
    problems = []
    problem = title_problem(title, instruction if looks_like_instruction(instruction) else "")
    if problem:
        problems.append(f"article {problem}")
    seen = set()
    for number, (section, points) in enumerate(sections, start=1):
        problem = title_problem(section, instruction)
        if problem:
            problems.append(f"section {number}: {problem}")
        key = _normalise(section)
        if key and key in seen:
            problems.append(f"section {number}: duplicate title {section!r}")
        seen.add(key)
        if number > 1 and key in _OPENINGS:
            problems.append(f"section {number}: {section!r} comes after section 1")
        for point in points:
            if leaked_prompt(point) or _normalise(point) in _META_TITLES or meta_sentences(point):
                problems.append(f"section {number}: key point {point!r} is not about the subject")
    return problems


# -- relevance -----------------------------------------------------------------------------

def relevance(texts: list[str], reference: str, embedder: Any) -> list[float]:
    """Cosine similarity of each text to `reference` (e.g. the instruction) under `embedder`
    (models/embed.py: encode() returns L2-normalised rows)."""
    if not texts:
        return []
    vectors = np.asarray(embedder.encode([reference] + list(texts)), dtype=np.float32)
    return [float(score) for score in vectors[1:] @ vectors[0]]


# -- one paragraph -------------------------------------------------------------------------

@dataclass
class ParagraphCheck:
    """The checks a paragraph passed (names) and failed (name -> reason)."""

    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def record(self, name: str, problem: str | None) -> None:
        if problem:
            self.failed[name] = problem
        else:
            self.passed.append(name)


def _quoted(items: list[str], limit: int = 2) -> str:
    return "; ".join(repr(item[:80]) for item in items[:limit])


def check_paragraph(text: str, article_so_far: str, language: str, *, instruction: str = "",
                    key_point: str = "", embedder: Any = None,
                    min_relevance: float = MIN_RELEVANCE,
                    similarity: float | None = None) -> ParagraphCheck:
    """Run every paragraph check before a section writer keeps `text`: clean (no
    meta-commentary), no_leak (no prompt or markup), new (no sentence of `article_so_far`
    repeated, not a near-copy of one of its paragraphs, distinct-2 high enough), complete
    (ends at a sentence end), language (purity), no_gibberish and, when an embedder is
    given, on_topic (similarity to the instruction or key point; `similarity` when the caller
    already embedded the text, so k drafts cost one embedding call)."""
    check = ParagraphCheck()
    meta = meta_sentences(text, language)
    check.record("clean", f"talks about itself or the reader: {_quoted(meta)}" if meta else None)
    leaks = leaked_prompt(text)
    check.record("no_leak", f"prompt or markup leaked: {_quoted(leaks)}" if leaks else None)
    earlier = [part for part in re.split(r"\n\s*\n", article_so_far) if part.strip()]
    repeats = repeated_sentences([text], earlier)
    copies = [pair for pair in near_duplicate_paragraphs(earlier + [text])
              if pair[1] == len(earlier)]
    distinct = distinct_n(text, 2)
    new_problem = None
    if copies:
        new_problem = f"near copy of paragraph {copies[0][0] + 1}"
    elif repeats:
        new_problem = f"repeats {len(repeats)} sentence(s): {_quoted(repeats)}"
    elif len(tokens(text)) >= 20 and distinct < MIN_DISTINCT_2:
        new_problem = f"distinct-2 is {distinct:.2f}, below {MIN_DISTINCT_2}: the text loops"
    check.record("new", new_problem)
    check.record("complete", f"ends mid-sentence: {text.strip()[-40:]!r}"
                 if ends_mid_sentence(text) else None)
    purity = language_purity(text, language)
    check.record("language", f"{purity:.0%} of the words are in {language}, below "
                 f"{MIN_PURITY:.0%}" if purity < MIN_PURITY else None)
    check.record("no_gibberish", "mostly upper-case run-on tokens" if caps_gibberish(text)
                 else None)
    if similarity is not None or (embedder is not None and (instruction or key_point)):
        references = [ref for ref in (instruction, key_point) if ref]
        score = similarity if similarity is not None else max(
            relevance([text], ref, embedder)[0] for ref in references)
        check.record("on_topic", f"similarity to the subject is {score:.2f}, below "
                     f"{min_relevance}" if score < min_relevance else None)
    return check
