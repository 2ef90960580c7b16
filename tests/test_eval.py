"""The eval command. Texts that misbehave in the ways quoted in issue 13 are counted in the
right columns; composed through the app (its paragraph checks), a scripted model that
writes them gives an article with none of them, and a clean one zeros."""

import json
from pathlib import Path

import pytest

from composer import eval as evaluation
from composer.cli import main
from composer.config import Settings
from composer.services import Services
from composer.types import Document, ImageBlock, InputError, Outline, SectionPlan, TextBlock
from tests.fake_article import article_reply, recognise, user_text
from tests.fakes import ScriptedLM
from tests.support_library import shared_embedder

BRIEFS = Path(__file__).parent / "data" / "briefs.jsonl"
BRIDGE = "Write a news story about a town that reopens its stone bridge to walkers."

# Replies of a model that misbehaves as the embedded one did (quotes from issue 13).
OUTLINES = {
    "bridge": (" Overview: Section Headings:; List of Sections:\n2. Key Points: List of "
               "Sections; Section Headings\n3. 2018-03-04: the date; the day\n4. Introduction: "
               "the bridge; the town"),
    "茶": (' <img src="a.png">茶的起源</p>：传说；云南\n2. 2019-05-27：日期；年份\n3. 宋代点茶：茶筅；泡沫\n'
          "4. 今天的茶馆：城市；乡村"),
    "Lighthouses": (" Early beacons: wood fires; stone towers\n2. The keepers: daily work; "
                    "isolation\n3. Automation: electric lamps; radio\n4. Visiting today: "
                    "museums; hotels"),
}
FIRST = ("The stone bridge over the river Ure reopened to walkers on Saturday after two years "
         "of repairs. Masons replaced the cracked parapet with sandstone from the original "
         "quarry.")
SECTIONS = {
    "bridge": [
        FIRST + ' The first section titled "Section Headings" contains all the sections you '
        "mentioned previously.",
        "I started with the introduction, which sets the tone for the rest of the blog post. "
        "This blog post has been edited to make it sound like a blog post.\n\nCrowds crossed at "
        "noon, 现在请写第1部分 [ArticleImg_1] while a brass band played.",
        FIRST.replace("Saturday", "Saturday morning") + "\n\nBEGINNINGNEXT: ... SEGMENTED "
        "BREAKFAST: HELPERED THE TRANSITION",
        "Here is the final section of the article. Overall, the story is written in a clear and "
        "concise manner. I hope this helps! Let me know if you need anything else.\n\nI hope "
        "this helps you out. If you have any questions, please don't hesitate to ask. Happy "
        "gardening!\n\nThis concludes the article.\n\nP.S.\n\nI'm sure many of you",
    ],
    "茶": [
        "茶起源于中国西南地区，已有几千年的历史。本文将介绍茶的起源。",
        "The tea leaves were picked in spring and dried in the sun on bamboo trays.",
        "唐代的陆羽写了《茶经》，现在请写第3部分，总结了种茶和煮茶的方法。",
        "以上就是茶文化的历史。希望对你有帮助。如果你有任何问题，请留言。",
    ],
    "Lighthouses": [
        "Norway's first beacons were wood fires lit on headlands to guide boats home. Stone "
        "towers with coal baskets followed in the seventeenth century.",
        "Keepers trimmed wicks, wound clockwork and logged the weather every four hours. "
        "Families lived for years on bare skerries, rowing to the mainland for supplies.",
        "Electric lamps and radio beacons arrived after the Second World War. By 2006 the last "
        "manned station on the coast had been automated.",
        "Many old stations now welcome visitors as museums, cafes and small hotels. Guests "
        "can climb the spiral stairs and watch the lens turn at dusk.",
    ],
}


def _subject(user: str) -> str:
    return next(key for key in OUTLINES if key in user)


def misbehaving_reply(messages, prefix):
    """Per brief (found by a word of its title): the quoted outline and section texts; a
    corrective rewrite comes back clean (the article writer's), as does any other prompt."""
    user = user_text(messages)
    kind, _, fields = recognise(user)  # a leaked "现在请写第1部分" in the article so far is
    if kind == "outline":  # not taken for the prompt's own section number
        return OUTLINES[_subject(user)]
    if kind in ("section", "paragraph"):
        return SECTIONS[_subject(user)][int(fields["number"]) - 1]
    return article_reply(messages, prefix)


@pytest.fixture
def services(tmp_path):
    settings = Settings.from_env({}, home=tmp_path / "home",
                                 model="tests.fakes:article_factory")
    made = Services(settings, lm=ScriptedLM(responder=misbehaving_reply))
    made.provide("embedder", shared_embedder())
    return made


def write_briefs(path: Path, briefs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(b, ensure_ascii=False) + "\n" for b in briefs), "utf-8")
    return path


THREE = [
    {"id": "bridge", "instruction": BRIDGE, "language": "en", "words": 800, "images": "auto",
     "genre": "news story"},
    {"id": "tea", "instruction": "中国茶文化的历史", "language": "zh", "words": 800, "images": 1,
     "genre": "history"},
    {"id": "lighthouses", "instruction": "Lighthouses of Norway", "language": "en",
     "words": 300, "images": 2, "genre": "history"},
]


def _written(key: str, title: str, instruction: str, language: str = "en") -> Document:
    """A document holding the misbehaving texts as they were written (no checks)."""
    blocks = [TextBlock(part, section=number) for number, text in enumerate(SECTIONS[key])
              for part in text.split("\n\n")]
    return Document(id=key, slug=key, title=title, instruction=instruction, blocks=blocks,
                    language=language, outline=Outline(title, [
                        SectionPlan(f"Part {n}", [], 200) for n in range(4)]))


def test_misbehaving_texts_are_counted_in_the_right_columns():
    bridge = evaluation.measure(_written("bridge", "The Stone Bridge Reopens", BRIDGE),
                                evaluation.Brief("bridge", BRIDGE, words=800))
    assert bridge.meta >= 10 and bridge.leaked >= 2 and bridge.repeated >= 2
    assert bridge.duplicate_paragraphs == 1 and bridge.mid_sentence >= 1  # "many of you"
    assert bridge.gibberish == 1
    assert "I'm sure many of you" in bridge.examples["mid_sentence"][-1]
    tea = evaluation.measure(_written("茶", "中国茶文化", "中国茶文化的历史", "zh"),
                             evaluation.Brief("tea", "中国茶文化的历史", language="zh", words=800))
    assert tea.meta >= 3 and tea.leaked >= 1 and tea.purity < 0.9


def test_the_checks_keep_a_misbehaving_model_out_of_the_article_and_a_clean_one_zeros(
        services, tmp_path):
    briefs = evaluation.load_briefs(write_briefs(tmp_path / "b.jsonl", THREE))
    results = {r.id: r for r in evaluation.run_eval(services, briefs, text_only=True)}
    bridge, tea, clean = results["bridge"], results["tea"], results["lighthouses"]
    assert bridge.outcome == "done" and bridge.words > 0 and tea.words > 0
    # The planner repairs part of a bad outline (issue 13, item 1), so the quoted outline is
    # measured on its own below; here it may only score no better than the clean one.
    assert bridge.outline_valid <= clean.outline_valid == 1.0
    for result in (bridge, tea, clean):
        for name in ("meta", "leaked", "repeated", "duplicate_paragraphs", "mid_sentence",
                     "gibberish"):
            assert getattr(result, name) == 0, (result.id, name, result.examples)
    assert tea.purity >= 0.9
    assert clean.off_topic == 0
    assert clean.outline_valid == 1.0 and clean.outline_problems == []
    assert clean.purity == 1.0 and clean.distinct_2 > 0.9
    assert clean.length_score < 50  # short paragraphs of about 30 words for 300 words
    # What was kept says how: the bad drafts were rewritten or trimmed; the clean ones kept.
    kept = {doc_id: [b.checks["how"] for b in services.documents.get(doc_id).text_blocks]
            for doc_id in (bridge.document_id, clean.document_id)}
    assert kept[clean.document_id] and set(kept[clean.document_id]) == {"kept"}
    assert {"rewritten", "trimmed"} & set(kept[bridge.document_id])
    summary = evaluation.summarize(list(results.values()))
    assert summary["measured"] == 3 and summary["total_meta"] == 0
    table = evaluation.format_table(list(results.values()), summary)
    assert table.splitlines()[0].split()[:5] == ["id", "lang", "target", "words", "S_l"]
    assert "3 of 3 briefs measured" in table


def _doc(blocks, title="Birdwatching in city parks"):
    return Document(id="d", slug="d", title=title, instruction=title, blocks=blocks,
                    outline=Outline(title, [SectionPlan("Where to look", ["ponds"], 100)]))


def test_the_quoted_outline_is_measured_invalid():
    brief = evaluation.Brief("bridge", BRIDGE, words=800)
    doc = _doc([TextBlock(FIRST)], title=BRIDGE.rstrip("."))
    doc.outline = Outline(doc.title, [
        SectionPlan(title, points, 200) for title, points in (
            ("Overview", ["Section Headings:", "List of Sections:"]),
            ("Key Points", ["sparrows"]), ("2018-03-04", []), ("Introduction", []))])
    result = evaluation.measure(doc, brief)
    assert result.outline_valid == 0.0  # every section has a problem (points, title, place)
    problems = "\n".join(result.outline_problems)
    assert "copies the instruction" in problems and "'Section Headings:'" in problems
    assert "'Introduction' comes after section 1" in problems


def test_images_whose_captions_do_not_describe_them_are_not_relevant():
    brief = evaluation.Brief("birds", "Birdwatching in city parks", words=100, images=2)
    shows = {"horse": "a black silhouette of a horse standing on a hill at sunset",
             "heron": "a grey heron standing at the edge of a park pond"}
    doc = _doc([
        TextBlock("Herons hunt fish at the edge of the park pond in the early morning."),
        ImageBlock("a grey heron by a pond in a city park", image_id="heron"),
        TextBlock("Sparrows and robins feed on the lawns near the benches."),
        ImageBlock("A Birding Scavenger", image_id="horse"),
    ])
    result = evaluation.measure(doc, brief, shared_embedder(),
                                lambda ids: {i: shows[i] for i in ids})
    assert result.images_requested == "2" and result.images_placed == 2
    assert result.images_relevant == 1 and result.caption_mismatch == 1
    assert "A Birding Scavenger" in result.examples["caption_mismatch"][0]


def test_load_briefs_filters_and_names_bad_lines(tmp_path):
    shipped = evaluation.load_briefs(BRIEFS)
    assert len(shipped) >= 20 and len({b.id for b in shipped}) == len(shipped)
    assert {b.language for b in shipped} == {"en", "zh"}
    assert all(300 <= b.words <= 5000 for b in shipped) and len({b.genre for b in shipped}) >= 8
    assert [b.id for b in evaluation.load_briefs(BRIEFS, ids=["zh-tea-history", "en-tides"])
            ] == ["en-tides", "zh-tea-history"]
    assert len(evaluation.load_briefs(BRIEFS, limit=3)) == 3
    with pytest.raises(InputError, match="no-such: no such brief"):
        evaluation.load_briefs(BRIEFS, ids=["no-such"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "instruction": "Tea"}\n{"instruction": "x"}\n')
    with pytest.raises(InputError, match="line 2: not a brief"):
        evaluation.load_briefs(bad)


def test_a_refused_brief_records_what_the_app_says(services, tmp_path):
    path = write_briefs(tmp_path / "b.jsonl", [{"id": "huge", "instruction": "Tea",
                                                "words": 99999}])
    result = evaluation.run_brief(services, evaluation.load_briefs(path)[0], text_only=True)
    assert result.outcome.startswith("refused: target words is 99999")
    assert result.words == 0 and "refused" in evaluation.format_table([result])


def test_chinese_with_the_english_only_embedded_writer_records_the_refusal(tmp_path):
    embedded = Services(Settings.from_env({}, home=tmp_path / "home"))  # loads no model
    brief = evaluation.load_briefs(BRIEFS, ids=["zh-water-notice"])[0]
    result = evaluation.run_brief(embedded, brief)
    assert result.outcome.startswith("refused: the writer model") and "zh" in result.outcome
    assert "lm" not in {name for name, made in embedded._made.items() if made is not None}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path / "home"


def test_cli_prints_the_table_and_writes_json(home, tmp_path, capsys):
    path = write_briefs(tmp_path / "b.jsonl", [dict(b, id=f"b{n}", instruction=f"Harbors {n}",
                                                    language="en", words=300)
                                               for n, b in enumerate(THREE)])
    out = tmp_path / "results" / "eval.json"
    code = main(["--model", "tests.fakes:article_factory", "eval", str(path), "--text-only",
                 "--ids", "b0,b2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = [line.split()[0] for line in captured.out.splitlines()[1:3]]
    assert rows == ["b0", "b2"] and "2 of 2 briefs measured" in captured.out
    assert "brief" in captured.err  # the tqdm bar
    data = json.loads(out.read_text())
    assert data["settings"]["text_only"] and data["settings"]["ids"] == ["b0", "b2"]
    assert [b["id"] for b in data["briefs"]] == ["b0", "b2"]
    assert data["summary"]["measured"] == 2 and data["briefs"][0]["length_score"] > 0
    assert main(["--model", "tests.fakes:article_factory", "eval", str(path), "--ids",
                 "nope"]) == 2
    assert "nope: no such brief" in capsys.readouterr().err


def test_ctrl_c_prints_the_table_of_the_briefs_done(home, tmp_path, capsys, monkeypatch):
    path = write_briefs(tmp_path / "b.jsonl", [dict(b, id=f"b{n}", instruction=f"Harbors {n}",
                                                    words=300) for n, b in enumerate(THREE)])
    real = evaluation.run_brief
    calls = []

    def interrupted_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "run_brief", interrupted_second)
    out = tmp_path / "eval.json"
    code = main(["--model", "tests.fakes:article_factory", "eval", str(path), "--text-only",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 130 and "Interrupted: 1 of 3 briefs done" in captured.err
    assert "1 of 1 briefs measured" in captured.out
    assert json.loads(out.read_text())["settings"]["interrupted"] is True
