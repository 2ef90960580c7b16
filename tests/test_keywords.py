"""models/keywords.py: tokens and BM25 scores for names and rare words."""

from __future__ import annotations

import math
import random

import pytest

from models.keywords import KeywordIndex, cjk_bigrams, fold_plural, tokenize

CAPTIONS = {
    "musk": "Elon Musk speaking on a stage at a technology conference",
    "speaker": "A man in a dark suit speaking on a stage at a conference",
    "falcon": "A Falcon 9 rocket lifting off from Cape Canaveral at night",
    "rocket": "A rocket standing on the launch pad before sunrise",
    "bridge": "The old stone bridge over the river in the morning light",
    "great_wall": "长城是中国古代的伟大工程",
    "market": "A fruit market in Beijing with apples and oranges",
}


@pytest.fixture()
def index() -> KeywordIndex:
    built = KeywordIndex()
    built.fit(list(CAPTIONS), list(CAPTIONS.values()))
    return built


def ranking(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda doc_id: (-scores[doc_id], doc_id))


def test_tokens_are_lowercase_words_without_stop_words():
    assert tokenize("The Falcon 9 rocket and the F-16 jets of the U.S.") == [
        "falcon", "9", "rocket", "f16", "f", "16", "jet", "u", "s"]
    assert tokenize("Elon Musk's rockets, 1,000 people; 3.5 km") == [
        "elon", "musk", "rocket", "1000", "people", "3.5", "km"]
    assert tokenize("Ｆａｌｃｏｎ　９") == ["falcon", "9"]  # full-width forms
    assert tokenize("café Zürich हिन्दी snake_case") == ["café", "zürich", "हिन्दी", "snake",
                                                         "case"]
    assert tokenize("") == [] and tokenize("the of and, a!") == []


def test_plural_folding():
    assert [fold_plural(word) for word in ["rockets", "bridges", "glass", "bus", "gas",
                                           "1990s", "cats"]] == [
        "rocket", "bridge", "glass", "bus", "gas", "1990", "cat"]
    assert tokenize("two bridges") == ["two", "bridge"]
    assert tokenize("Bridges") == tokenize("bridge")


def test_cjk_text_becomes_overlapping_bigrams():
    assert tokenize("长城在中国") == ["长城", "城在", "在中", "中国"]
    assert tokenize("iPhone手机 and 猫 dog") == ["iphone", "手机", "猫", "dog"]
    assert tokenize("東京タワー") == ["東京", "京タ", "タワ", "ワー"]
    assert cjk_bigrams("猫") == ["猫"]


def test_bm25_values_match_a_hand_computation():
    index = KeywordIndex(k1=1.2, b=0.75)
    index.fit(["d1", "d2", "d3"], ["cat sat mat", "dog sat", "cat cat dog bird"])
    # N = 3, lengths 3, 2, 4, average 3; "cat" is in d1 and d3 (df = 2)
    idf_cat = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    assert index.idf("cat") == pytest.approx(idf_cat)
    d1 = idf_cat * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / 3))  # = idf_cat exactly
    d3 = idf_cat * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 4 / 3))
    scores = index.scores("cat")
    assert scores == pytest.approx({"d1": d1, "d3": d3})
    assert d1 == pytest.approx(idf_cat)
    # two terms add up; "bird" (df 1) is rarer than "cat"
    idf_bird = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    bird_d3 = idf_bird * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 4 / 3))
    assert index.scores("cat bird")["d3"] == pytest.approx(d3 + bird_d3)
    # a repeated query term counts once
    assert index.scores("cat cat cat") == pytest.approx(scores)


def test_a_proper_name_ranks_its_caption_first(index):
    assert ranking(index.scores("a photo of Musk at the conference"))[0] == "musk"
    assert ranking(index.scores("Falcon 9 launch"))[0] == "falcon"
    assert ranking(index.scores("rockets on launch pads"))[0] == "rocket"  # plurals fold
    assert ranking(index.scores("中国长城"))[0] == "great_wall"
    # only documents sharing a term are listed
    assert set(index.scores("Beijing")) == {"market"}


def test_stop_words_do_not_score(index):
    assert index.scores("the of at a in on with") == {}
    assert index.scores("the Musk") == index.scores("Musk")


def test_candidate_ids_get_a_score_each(index):
    scores = index.scores("rocket at night", ids=["rocket", "bridge", "unknown", "falcon"])
    assert list(scores) == ["rocket", "bridge", "unknown", "falcon"]
    assert scores["bridge"] == 0.0 and scores["unknown"] == 0.0
    full = index.scores("rocket at night")
    assert scores["rocket"] == full["rocket"] and scores["falcon"] == full["falcon"]
    assert index.scores("rocket", ids=[]) == {}


def test_incremental_updates_equal_a_fresh_fit(index):
    index.upsert("musk", "Elon Musk next to a Falcon 9 booster")  # replace
    index.upsert("moon", "The surface of the moon seen from orbit")  # add
    assert index.remove("bridge") is True
    assert index.remove("bridge") is False  # unknown ids are not an error
    expected = dict(CAPTIONS, musk="Elon Musk next to a Falcon 9 booster",
                    moon="The surface of the moon seen from orbit")
    del expected["bridge"]
    fresh = KeywordIndex()
    fresh.fit(list(expected), list(expected.values()))
    assert len(index) == len(fresh) == len(expected)
    assert "moon" in index and "bridge" not in index
    for query in ["Falcon 9", "moon orbit", "bridge river", "conference stage Musk", "中国"]:
        assert index.scores(query) == pytest.approx(fresh.scores(query), rel=1e-12)
        assert index.normalized_scores(query) == pytest.approx(fresh.normalized_scores(query))


def test_removing_everything_empties_the_statistics(index):
    for doc_id in list(CAPTIONS):
        index.remove(doc_id)
    assert len(index) == 0
    assert index.scores("rocket") == {}
    assert index._postings == {} and index._total_length == 0
    index.upsert("again", "a rocket")
    assert set(index.scores("rocket")) == {"again"}


def test_empty_query_and_empty_corpus():
    empty = KeywordIndex()
    assert len(empty) == 0
    assert empty.scores("rocket") == {}
    assert empty.normalized_scores("rocket") == {}
    assert empty.scores("rocket", ids=["a"]) == {"a": 0.0}
    assert empty.normalized_scores("rocket", ids=["a"]) == {"a": 0.0}
    empty.fit([], [])
    filled = KeywordIndex()
    filled.fit(["a", "b"], ["a rocket", ""])  # an empty text is a document without terms
    assert len(filled) == 2
    assert filled.scores("") == {} and filled.normalized_scores("  the ") == {}
    assert filled.normalized_scores("", ids=["a", "b"]) == {"a": 0.0, "b": 0.0}


def test_normalized_scores_lie_in_zero_to_one(index):
    for query in ["Elon Musk", "rocket", "rocket rocket launch pad sunrise", "zebra",
                  "Falcon 9 rocket at night over Cape Canaveral", "长城"]:
        for score in index.normalized_scores(query, ids=list(CAPTIONS)).values():
            assert 0.0 <= score <= 1.0
    normalized = index.normalized_scores("conference stage")
    # both speakers' captions hold both words at about the average length
    assert normalized["musk"] == pytest.approx(1.0, abs=0.1)
    assert normalized["speaker"] == pytest.approx(1.0, abs=0.1)
    # words no caption holds do not shrink the scale
    assert index.normalized_scores("conference stage zebra") == normalized


def test_a_typical_document_with_every_query_term_scores_one():
    index = KeywordIndex()
    index.fit(["a", "b", "c"], ["red apple tree", "green pear tree", "blue plum bush"])
    assert index.normalized_scores("apple tree")["a"] == pytest.approx(1.0)
    assert index.normalized_scores("apple tree")["b"] < 0.5  # only the common word
    assert index.normalized_scores("apple plum")["a"] == pytest.approx(0.5)


def test_invalid_arguments_are_explained():
    with pytest.raises(ValueError, match="k1=-1"):
        KeywordIndex(k1=-1)
    with pytest.raises(ValueError, match="b=2"):
        KeywordIndex(b=2)
    index = KeywordIndex()
    with pytest.raises(ValueError, match="2 ids but 1 texts"):
        index.fit(["a", "b"], ["x"])
    with pytest.raises(ValueError, match=r"duplicate ids \['a'\]"):
        index.fit(["a", "a"], ["x", "y"])
    with pytest.raises(TypeError, match="'a' is NoneType"):
        index.upsert("a", None)


class CountingList(list):
    """A list that counts item reads (the index's per-document lengths)."""

    reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return super().__getitem__(key)


def test_a_query_reads_only_the_postings_of_its_words():
    # What makes a query fast on a big library, as behaviour: it scores the documents in its
    # words' postings and never walks the whole library. The query time (under 200 ms at
    # 100k captions) is measured by bench/bench_keywords.py, not asserted here.
    rng = random.Random(0)
    vocabulary = [f"word{number}" for number in range(5000)]
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(6, 12))) for _ in range(20_000)]
    texts[1234] += " Lovelace"
    index = KeywordIndex()
    index.fit([f"doc{number}" for number in range(len(texts))], texts)
    assert len(index) == 20_000
    lengths = index._lengths = CountingList(index._lengths)
    query = "Ada Lovelace word1 word2 word3 word4 word5"
    scores = index.normalized_scores(query)
    words = set(tokenize(query))
    holding = {f"doc{number}" for number, text in enumerate(texts) if words & set(tokenize(text))}
    postings = sum(len(index._postings.get(word, ())) for word in words)
    assert set(scores) == holding and 100 < len(scores) < 300
    assert all(0.0 <= score <= 1.0 for score in scores.values())
    assert lengths.reads == postings  # one length read per posting, none per other document
    assert list(index.scores("Ada Lovelace")) == ["doc1234"]
