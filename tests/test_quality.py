"""composer/quality.py: each misbehaviour quoted in issue 13 is caught by the right check,
and clean prose about the subject passes every check (en and zh)."""

import pytest

from composer import quality
from composer.quality import (
    caps_gibberish,
    check_paragraph,
    distinct_n,
    ends_mid_sentence,
    language_purity,
    leaked_prompt,
    length_score,
    meta_sentences,
    near_duplicate_paragraphs,
    outline_problems,
    repeated_sentences,
    split_sentences,
    title_problem,
)

CLEAN = (
    "The harbor at Bergen has sheltered fishing boats since the twelfth century. Merchants of "
    "the Hanseatic League built wooden warehouses along the quay, and the story of the town is "
    "written in those timbers. In 1702 a fire destroyed most of the wharf, yet the owners "
    "rebuilt it on the old foundations. Today the first section of the wharf houses a museum, "
    "and the introduction of electric ferries has quietened the water. Visitors who arrive "
    "early see the fish market open at seven."
)
CLEAN_ZH = ("茶起源于中国西南地区，已有几千年的历史。唐代的陆羽写了《茶经》，总结了种茶、制茶和煮茶的方法。"
            "宋代流行点茶，人们用茶筅把茶粉打出细腻的泡沫。")

META_QUOTES = [
    'The first section titled "Section Headings" contains all the sections you mentioned '
    "previously.",
    "I started with the introduction, which sets the tone for the rest of the blog post.",
    "A new piece adds to the existing narrative, exploring the role of seawalls.",
    "This piece explores how the harbors of the north grew.",
    "This is an excellent article.",
    "This post focuses on highlighting the importance of budget wireless headphones.",
    "The paragraph is dedicated to the topic of bees.",
    "I made a few tweaks to enhance clarity and make it flow better: Added \"Their\".",
    'Changed "The only source of energy" to "Its only food".',
    "The first paragraph of section 1 is dedicated to the topic of bees.",
    "It begins with a clear introduction, which can be followed by paragraph 1 about bees.",
    "The paragraphs are well-structured, each focusing on one main idea.",
    "The first paragraph covers the topic's essence.",
    "The opening sentence sets the stage for the rest.",
    "The second section focuses on adding details about the subject itself.",
    "This blog post has been edited to make it sound like a blog post.",
    "Here is the final section of the article.",
    "I hope this helps!",
    "Let me know if you need anything else.",
    "Overall, the story is written in a clear and concise manner.",
    "I hope this helps you out.",
    "If you have any questions, please don't hesitate to ask.",
    "Happy gardening!",
    "This concludes the article.",
    "P.S.",
    "As an AI language model, I cannot visit the park.",
    "In this article, we will explore the history of tea.",
    "Feel free to share your own tips in the comments.",
    # Written by the embedded model in bench/results/eval_embedded.json:
    "\"Sure, I'd be happy to help you craft an engaging description of the product.",
    "Here's a sample text that describes the product in detail:",
    "The first part of this article focuses on the basics of birdwatching in city parks.",
    "I made several changes to enhance clarity and style throughout the article.",
    "This topic was written in a friendly tone so I hope it helps.",
    "You could revise this sentence to improve clarity and grammar.",
    "We hope readers will take away a few takeaways from this piece.",
    "Readers can walk away with a better idea of the hobby.",
    "This is a comprehensive and informative piece that provides an overview of birdwatching.",
    "The content includes information on where to find birds.",
    "We also touched upon sustainable practices when discussing eco-friendly ways.",
    "This amazing blog post brings several important aspects of our planet closer together.",
    # Drafts of the embedded model that the paragraph checks must catch (composer/checked.py):
    "This is an introduction to the topic that can be found on any website.",
    "This post will be filled with exciting details on local birds eating.",
    "This is a great example of how to make content more engaging by sharing anecdotes.",
    "Please use this as your main point because it contains many valuable points.",
    "This is the first paragraph of the section two lives.",
]
META_QUOTES_ZH = ["希望对你有帮助。", "本文将介绍茶的历史。", "以上就是茶文化的全部内容。",
                  "如果你有任何问题，请在评论区留言。", "感谢阅读！"]


@pytest.mark.parametrize("sentence", META_QUOTES)
def test_every_quoted_meta_sentence_is_flagged(sentence):
    assert meta_sentences(sentence, "en") == [sentence]


@pytest.mark.parametrize("sentence", META_QUOTES_ZH)
def test_chinese_meta_sentences_are_flagged(sentence):
    assert meta_sentences(sentence, "zh") == [sentence]


def test_meta_sentences_are_picked_out_of_a_paragraph():
    text = ("Tomatoes need six hours of sun a day. I hope this helps you out. If you have any "
            "questions, please don't hesitate to ask. Happy gardening!")
    assert meta_sentences(text, "en") == [
        "I hope this helps you out.", "If you have any questions, please don't hesitate to ask.",
        "Happy gardening!"]


def test_clean_prose_about_the_subject_is_not_meta_or_leaked():
    # "the story of the town is written", "the first section of the wharf", "the
    # introduction of electric ferries": prose about the subject, not about the text.
    assert meta_sentences(CLEAN, "en") == []
    assert leaked_prompt(CLEAN) == []
    assert meta_sentences(CLEAN_ZH, "zh") == [] and leaked_prompt(CLEAN_ZH) == []
    for text in ("Sure enough, the tide came in.", "I hope the weather holds for the festival.", "Happy birthdays were rare "
                 "in the workhouse.", "Let the dough rest for an hour.", "The post office "
                 "opened in 1890.", "Section 3 of the bridge was rebuilt in 1921.",
                 "Each new piece of amber adds to the museum's collection.",
                 "The last section of the wall is made of stone.",
                 "The first sentence of the treaty is often quoted.",
                 "A good post office stood near the harbor.",
                 "They cleared the stones from this piece of land.",
                 "The key takeaway from this season is patience.",
                 "This old stone piece of the wall dates from 1400.",
                 "This is a simple piece of advice: arrive early."):
        assert meta_sentences(text, "en") == [], text


@pytest.mark.parametrize("text, piece", [
    ("现在请写第1部分“茶的起源”。", "现在请写"),
    ("The market opens at dawn [ArticleImg_2] with fruit.", "[ArticleImg_"),
    ("See <Seg3> for the harbor.", "<Seg3>"),
    ("Key points: history; boats", "Key points:"),
    ("The Section Headings list every part.", "Section Headings"),
    ("<|im_start|>assistant The bridge", "<|im_start|>"),
    ("A title</p>", "</p>"),
    ('<img src="harbor.jpg"> The harbor', '<img src="harbor.jpg">'),
    ("## The keepers", "## "),
    ("Now write section 2, about keepers.", "now write section"),
    ("Do not repeat the section title, do not add headings or lists.",
     "do not repeat the section title, do not add headings or lists"),
    ("请改写这段文字，约100字，保留原意和文章风格。", "保留原意和文章风格"),
])
def test_prompt_fragments_tags_and_markup_are_leaks(text, piece):
    assert any(piece.strip().lower() in found.lower() for found in leaked_prompt(text))


def test_repeated_sentences_exact_and_near_duplicates():
    first = ("Birdwatching in a city park needs little more than patience and a pair of "
             "binoculars. Sparrows and blackbirds are the easiest birds to spot at dawn.")
    fifth = ("Birdwatching in a city park needs little more than patience and a pair of "
             "binoculars! Sparrows and blackbirds are the easiest birds to spot at dawn.")
    paragraphs = [first, "Herons hunt along the pond.", "Swifts nest under the eaves.",
                  "Owls call at night from the old oaks.", fifth]
    assert len(repeated_sentences(paragraphs)) == 2
    assert near_duplicate_paragraphs(paragraphs) == [(0, 4)]
    near = "Sparrows and blackbirds are the easiest birds to spot at dawn, really."
    assert repeated_sentences([near], earlier=[first]) == [near]
    assert repeated_sentences([CLEAN]) == [] and near_duplicate_paragraphs([CLEAN, CLEAN_ZH]) == []


def test_distinct_2_falls_for_looping_text():
    assert distinct_n("the cat sat on the mat", 2) == 1.0
    assert distinct_n("the garden the garden the garden the garden", 2) == pytest.approx(2 / 7)
    assert distinct_n("茶茶茶茶", 2) == pytest.approx(1 / 3)
    assert distinct_n("one", 2) == 0.0


def test_mid_sentence_endings():
    assert ends_mid_sentence("I'm sure many of you")
    assert ends_mid_sentence("The keeper lit the lamp and")
    for complete in ("It ended.", 'He said "yes."', "Really?", "太好了！", "茶很香。", "Wait…"):
        assert not ends_mid_sentence(complete), complete


def test_caps_gibberish():
    assert caps_gibberish("BEGINNINGNEXT: ... SEGMENTED BREAKFAST: HELPERED THE TRANSITION")
    assert not caps_gibberish("NASA and UNESCO worked with the EU on the project in 1998.")
    assert not caps_gibberish(CLEAN)


def test_length_score_at_known_points():
    assert length_score(1000, 1000) == 100
    assert length_score(1000, 2000) == pytest.approx(100 * (1 - 1 / 3))
    assert length_score(1000, 500) == pytest.approx(50)
    assert length_score(1000, 4000) == 0 and length_score(1000, 5000) == 0  # floored
    assert length_score(1000, 250) == 0
    assert length_score(5000, 5080) == pytest.approx(100 * (1 - 0.016 / 3))
    assert length_score(1000, 0) == 0


def test_sentence_splitting_en_and_zh():
    assert split_sentences("茶起源于中国。它很香！你喝过吗？好的") == ["茶起源于中国。", "它很香！",
                                                          "你喝过吗？", "好的"]
    assert split_sentences("Dr. Smith paid 3.5 dollars. He left! Why? Because") == [
        "Dr. Smith paid 3.5 dollars.", "He left!", "Why?", "Because"]
    assert split_sentences('He said "stop." Then he left.') == ['He said "stop."', "Then he left."]


def test_language_purity():
    assert language_purity(CLEAN, "en") == 1.0
    assert language_purity(CLEAN_ZH, "zh") == 1.0
    english_in_zh = "The tea leaves were picked in spring. 茶叶"
    assert language_purity(english_in_zh, "zh") < 0.5
    assert language_purity("茶起源于中国，Tea is good", "zh") == pytest.approx(6 / 9)
    assert language_purity("", "en") == 0.0


@pytest.mark.parametrize("title", ["2018-03-04", "2019年5月27日", "Key Points", "Section Headings:",
                                   "List of Sections", "A history of tea</p>",
                                   '<img src="a.png">', "https://example.com", ""])
def test_titles_that_are_not_titles(title):
    assert title_problem(title) is not None


def test_good_titles_and_the_copied_instruction():
    for title in ("Introduction", "Early beacons", "茶的起源", "The 1906 earthquake"):
        assert title_problem(title) is None, title
    request = "Write a news story about a town that reopens its stone bridge to walkers."
    assert "copies the instruction" in title_problem(request.rstrip("."), request)


def test_outline_problems_of_the_quoted_outlines():
    problems = outline_problems("Birds in the park", [
        ("Overview", ["Section Headings:", "List of Sections:"]),
        ("Key Points", ["sparrows"]), ("2018-03-04", []), ("Introduction", [])])
    text = "\n".join(problems)
    assert "key point 'Section Headings:'" in text and "key point 'List of Sections:'" in text
    assert "section 2: title 'Key Points'" in text and "section 3: title '2018-03-04'" in text
    assert "section 4: 'Introduction' comes after section 1" in text
    request = "Write a news story about the new bridge."
    assert outline_problems("Write a news story about the new bridge", [("Opening day", [])],
                            request) == ["article title 'Write a news story about the new "
                                         "bridge' copies the instruction"]
    # An instruction that is itself a title may be the article's title.
    assert outline_problems("Lighthouses of Norway", [("Introduction", ["early beacons"]),
                                                      ("The keepers", ["daily work"])],
                            "Lighthouses of Norway") == []


def test_check_paragraph_passes_clean_text_and_names_each_failure():
    check = check_paragraph(CLEAN, "", "en")
    assert check.ok and set(check.passed) == {"clean", "no_leak", "new", "complete",
                                              "language", "no_gibberish"}
    assert check_paragraph(CLEAN_ZH, "", "zh").ok
    cases = {
        "clean": "The tide turns twice a day. I hope this helps! Let me know.",
        "no_leak": "The tide turns twice a day [ArticleImg_1] in the bay.",
        "complete": "The tide turns twice a day and the boats",
        "language": "潮水每天涨两次。The boats wait in the harbor for the water.",
        "no_gibberish": "BEGINNINGNEXT: SEGMENTED BREAKFAST: HELPERED THE TRANSITION.",
    }
    for name, text in cases.items():
        check = check_paragraph(text, "", "zh" if name == "language" else "en")
        assert name in check.failed, (name, check)
    repeat = check_paragraph(CLEAN, "Intro text here.\n\n" + CLEAN, "en")
    assert "near copy of paragraph 2" in repeat.failed["new"]
    loop = check_paragraph("the tide and the tide and " * 8 + "the end.", "", "en")
    assert "distinct-2" in loop.failed["new"]


def test_check_paragraph_on_topic_uses_the_given_embedder():
    from tests.support_library import shared_embedder

    embedder = shared_embedder()
    instruction = "A beginner's guide to birdwatching in city parks"
    on = ("Bring binoculars to the park at dawn, when sparrows, robins and blackbirds feed on "
          "the lawns and herons fish along the pond.")
    off = "Quarterly tax returns must be filed with the revenue office before the deadline."
    assert "on_topic" in check_paragraph(on, "", "en", instruction=instruction,
                                         embedder=embedder).passed
    failed = check_paragraph(off, "", "en", instruction=instruction, embedder=embedder).failed
    assert "below" in failed["on_topic"]
    scores = quality.relevance([on, off], instruction, embedder)
    assert scores[0] > quality.MIN_RELEVANCE > scores[1]
