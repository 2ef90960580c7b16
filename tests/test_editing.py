"""Editing a written article (composer/editing.py) on the scripted model and REAL storage.

Every test runs on SQLite and on PostgreSQL (tests/support_storage.py: skipped when no server
is reachable). Documents are composed by the real Composer, so their paragraphs carry the
origin "compose" as in the app.
"""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from composer.edit_checks import MAX_EDIT_INSTRUCTION_CHARS
from composer.edit_outline import match_sections
from composer.editing import Editor
from composer.pairs_capture import capture, is_trivial, prompt_context
from composer.pipeline import Composer
from composer.types import (
    ComposeRequest,
    ConflictError,
    ImageBlock,
    InputError,
    NotFoundError,
    Outline,
    SectionPlan,
    TextBlock,
    count_words,
)
from storage.pairs import PairRepository
from tests.fakes import ArticleWriter, ScriptedLM, WordOverlapRetriever
from tests.support_pipeline import LIBRARY, png_bytes
from tests.support_storage import *  # noqa: F403

OUTLINE = Outline("Harbors of the north", [
    SectionPlan("Alpha harbors", ["boats", "light"], 180),
    SectionPlan("Beta bridges", ["stone", "river"], 180),
    SectionPlan("Gamma markets", ["fruit"], 100),
])


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def library(store):
    """The store with six small real images (the pipeline tests' library)."""
    for caption, color in LIBRARY:
        store.add(png_bytes(color), caption=caption, source="test", license="CC0",
                  allow_near_duplicate=True, attribution="Test Suite")
    return store


@pytest.fixture
def pairs(db):
    return PairRepository(db)


@pytest.fixture
def lm():
    """The article writer: it answers every edit prompt with a paragraph of the asked length."""
    return ArticleWriter()


@pytest.fixture
def editor(lm, repo, library, pairs):
    return Editor(lm, repo, retriever=WordOverlapRetriever(library), pairs=pairs)


def compose(repo, library, language="en", images=1, outline=OUTLINE):
    """A composed, saved document: 5 paragraphs in 3 sections, `images` image(s)."""
    composer = Composer(ArticleWriter(), repo, WordOverlapRetriever(library))
    request = ComposeRequest(outline.title, language=language, target_words=460,
                             images=images, text_only=images == 0)
    return composer.compose_document(request, outline=outline)


@pytest.fixture
def doc(repo, library):
    return compose(repo, library)


def run(previews):
    """All previews of an operation; the last one is done and carries the proposal."""
    items = list(previews)
    assert items[-1].done and items[-1].proposal is not None
    assert not any(item.done for item in items[:-1])
    return items


def texts(doc):
    return [block.text for block in doc.text_blocks]


# -- paragraph operations ------------------------------------------------------------------


def test_rewrite_streams_then_accept_is_one_undoable_change_with_a_pair(editor, repo, pairs,
                                                                         doc):
    target = doc.text_blocks[1]
    previews = run(editor.preview(doc.id, "rewrite", block_id=target.id,
                                  instruction="make it livelier"))
    assert len(previews) > 5  # several deltas before the end
    assert previews[-2].text.startswith(previews[0].text)
    assert [p.fraction for p in previews] == sorted(p.fraction for p in previews)
    proposal = previews[-1].proposal
    assert proposal.op == "rewrite" and proposal.block_id == target.id
    assert proposal.base_version == doc.version and proposal.rejected == target.text
    user = proposal.prompt[-1]["content"]
    for shown in (doc.title, "Alpha harbors", doc.text_blocks[0].text[-40:],
                  doc.text_blocks[2].text[:40], target.text, "make it livelier"):
        assert shown in user
    assert repo.history(doc.id) == []  # nothing written by a preview

    saved = editor.accept(proposal, expected_version=doc.version, owner="ann")
    block = next(b for b in saved.text_blocks if b.id == target.id)
    assert block.text == proposal.paragraphs[0] != target.text
    assert block.origin == "rewrite"
    assert repo.get(doc.id).blocks == saved.blocks
    [change] = repo.history(doc.id)
    assert change.label == "rewrite paragraph 2"
    assert (change.version_before, change.version_after) == (doc.version, saved.version)

    [pair] = pairs.list()
    assert (pair.rejected, pair.chosen, pair.op) == (target.text, block.text, "rewrite")
    assert pair.rejected_origin == "compose" and pair.kind == "introduction"
    assert pair.owner == "ann" and pair.document_id == doc.id and pair.block_id == target.id
    assert "of section 1, \"Alpha harbors\"" in pair.prompt[-1]["content"]

    undone = repo.undo(doc.id, expected_version=saved.version)
    assert texts(undone) == texts(doc)
    assert next(b for b in undone.text_blocks if b.id == target.id).origin == "compose"


@pytest.mark.parametrize(("op", "low", "high"), [("expand", 1.3, 2.0), ("abbreviate", 0.3, 0.7),
                                                 ("rewrite", 0.7, 1.3)])
def test_length_budgets(editor, lm, doc, op, low, high):
    target = doc.text_blocks[0]
    proposal = run(editor.preview(doc.id, op, block_id=target.id))[-1].proposal
    ratio = count_words(proposal.proposed_text) / count_words(target.text)
    assert low <= ratio <= high
    asked = round(count_words(target.text) * {"expand": 1.6, "abbreviate": 0.5,
                                              "rewrite": 1.0}[op])
    assert f"about {asked} words" in lm.calls[-1][0][-1].content
    config = lm.calls[-1][2]
    assert config.do_sample and config.seed is not None  # asking again gives another take
    saved = editor.accept(proposal, expected_version=doc.version,
                          edited_text=proposal.proposed_text)  # shown, accepted unchanged
    assert saved.text_blocks[0].origin == op


@pytest.mark.parametrize("op", ["insert_before", "insert_after"])
def test_insert_written_by_the_model(editor, repo, pairs, doc, op):
    anchor = doc.text_blocks[2]
    proposal = run(editor.preview(doc.id, op, block_id=anchor.id))[-1].proposal
    saved = editor.accept(proposal, expected_version=doc.version)
    position = [b.id for b in saved.blocks].index(anchor.id)
    new = saved.blocks[position - 1] if op == "insert_before" else saved.blocks[position + 1]
    assert isinstance(new, TextBlock) and new.origin == "insert"
    assert new.section == anchor.section and new.text == proposal.paragraphs[0]
    assert len(saved.text_blocks) == len(doc.text_blocks) + 1
    assert repo.history(doc.id)[-1].label.startswith(f"insert a paragraph "
                                                     f"{op.split('_')[1]} paragraph 3")
    assert pairs.count() == 0  # nothing was replaced


def test_regenerate_a_section_replaces_its_paragraphs_and_keeps_its_image(editor, repo, pairs,
                                                                          doc):
    first = [b for b in doc.blocks if b.section == 0]
    assert any(isinstance(b, ImageBlock) for b in first)
    previews = run(editor.preview(doc.id, "regenerate", section=0, instruction="more boats"))
    proposal = previews[-1].proposal
    assert "Now write section 1" in proposal.prompt[-1]["content"]
    assert "Author's instruction: more boats" in proposal.prompt[-1]["content"]
    assert len(proposal.paragraphs) == 2
    saved = editor.accept(proposal, expected_version=doc.version)
    section = [b for b in saved.blocks if b.section == 0]
    assert [b.text for b in section if isinstance(b, TextBlock)] == proposal.paragraphs
    assert all(b.origin == "regenerate" for b in section if isinstance(b, TextBlock))
    assert [b.id for b in section if isinstance(b, ImageBlock)] == \
        [b.id for b in first if isinstance(b, ImageBlock)]
    assert texts(saved)[2:] == texts(doc)[2:]
    [change] = repo.history(doc.id)
    assert change.label == "regenerate section 1"
    [pair] = pairs.list()
    assert pair.op == "regenerate" and pair.rejected == "\n\n".join(texts(doc)[:2])
    assert pair.prompt == proposal.prompt
    undone = repo.undo(doc.id, expected_version=saved.version)
    assert texts(undone) == texts(doc)


def test_regenerate_by_block_id_uses_its_section(editor, doc):
    block = doc.text_blocks[3]
    proposal = run(editor.preview(doc.id, "regenerate", block_id=block.id))[-1].proposal
    assert proposal.section == block.section


def test_cancel_keeps_the_partial_preview(editor, repo, lm, doc):
    target = doc.text_blocks[0]
    cancel = threading.Event()
    seen = []
    for preview in editor.preview(doc.id, "expand", block_id=target.id, cancel=cancel):
        seen.append(preview)
        if len(seen) == 4:
            cancel.set()
    last = seen[-1]
    assert last.done and last.cancelled and last.proposal.cancelled
    assert last.proposal.proposed_text == seen[-2].text.strip()
    assert 0 < count_words(last.proposal.proposed_text) < count_words(target.text)
    saved = editor.accept(last.proposal, expected_version=doc.version)
    assert saved.text_blocks[0].text == last.proposal.proposed_text


def test_edited_preview_is_manual_and_its_pair_says_so(editor, pairs, doc):
    target = doc.text_blocks[4]
    proposal = run(editor.preview(doc.id, "rewrite", block_id=target.id))[-1].proposal
    mine = "A person wrote this instead, about lanterns and the long winter nights."
    saved = editor.accept(proposal, expected_version=doc.version,
                          edited_text=mine + "\n\nNote: and a second one:")
    block = next(b for b in saved.text_blocks if b.id == target.id)
    assert (block.text, block.origin) == (mine, "manual")
    assert saved.text_blocks[-1].text == "Note: and a second one:"  # kept as typed
    [pair] = pairs.list()
    assert (pair.op, pair.kind) == ("manual", "conclusion")
    assert pair.chosen == mine + "\n\nNote: and a second one:"


def test_a_rewrite_may_come_back_as_several_paragraphs_without_quotes(repo, library, doc):
    first = ("First new paragraph, written again: the harbor wall was rebuilt in granite after "
             "the winter storms of the last century.")
    second = ("Second new paragraph, added: fishing boats still land their catch at dawn on "
              "the old stone quay below the market.")
    reply = f'"{first}"\n\n"{second}"'
    lm = ScriptedLM(replies=[reply])
    editor = Editor(lm, repo)
    target = doc.text_blocks[1]
    proposal = run(editor.preview(doc.id, "rewrite", block_id=target.id))[-1].proposal
    assert proposal.paragraphs == [first, second]
    saved = editor.accept(proposal, expected_version=doc.version)
    position = [b.id for b in saved.blocks].index(target.id)
    assert [b.text for b in saved.blocks[position:position + 2]] == proposal.paragraphs
    assert [b.origin for b in saved.blocks[position:position + 2]] == ["rewrite", "rewrite"]
    assert len(repo.history(doc.id)) == 1
    undone = repo.undo(doc.id, expected_version=saved.version)
    assert texts(undone) == texts(doc)


def test_unchanged_manual_edit_writes_nothing(editor, repo, doc):
    block = doc.text_blocks[0]
    same = editor.edit_text(doc.id, block.id, block.text + "  ", expected_version=doc.version)
    assert same.version == doc.version and repo.history(doc.id) == []


def test_stale_version_is_refused_and_writes_nothing(editor, repo, pairs, doc):
    target = doc.text_blocks[0]
    proposal = run(editor.preview(doc.id, "rewrite", block_id=target.id))[-1].proposal
    other = editor.edit_text(doc.id, doc.text_blocks[1].id, "Someone else changed this one.",
                             expected_version=doc.version)
    before = (repo.get(doc.id), len(repo.history(doc.id)), pairs.count())
    with pytest.raises(ConflictError, match="reload"):
        editor.accept(proposal, expected_version=doc.version)
    with pytest.raises(ConflictError):
        editor.accept(proposal, expected_version=other.version)  # the preview is stale
    with pytest.raises(ConflictError):
        editor.edit_text(doc.id, target.id, "A stale edit.", expected_version=doc.version)
    with pytest.raises(ConflictError):
        editor.delete_block(doc.id, target.id, expected_version=doc.version)
    assert (repo.get(doc.id), len(repo.history(doc.id)), pairs.count()) == before


# -- direct edits and pairs ------------------------------------------------------------------


def test_manual_edit_of_model_text_stores_a_pair_but_not_a_trivial_one(editor, repo, pairs, doc):
    target = doc.text_blocks[2]
    typo = target.text[:-1] + "!"  # punctuation only
    saved = editor.edit_text(doc.id, target.id, typo, expected_version=doc.version)
    assert pairs.count() == 0
    assert next(b for b in saved.text_blocks if b.id == target.id).origin == "manual"
    # Now the paragraph is the person's: even a big change of it is no pair.
    saved = editor.edit_text(doc.id, target.id, "Entirely different words by a person now.",
                             expected_version=saved.version)
    assert pairs.count() == 0
    assert [c.label for c in repo.history(doc.id)] == ["edit paragraph 3"] * 2

    other = saved.text_blocks[3]
    chosen = "The bridges of stone carry the river roads, as people tell it here."
    editor.edit_text(doc.id, other.id, chosen, expected_version=saved.version, owner="bo")
    [pair] = pairs.list()
    assert (pair.rejected, pair.chosen, pair.op, pair.kind) == (other.text, chosen, "manual",
                                                                "body")


def test_typed_paragraph_is_typed_and_editing_it_stores_no_pair(editor, repo, pairs, doc):
    anchor = doc.text_blocks[0]
    saved = editor.insert_text(doc.id, "My own paragraph.", after_block_id=anchor.id,
                               expected_version=doc.version)
    new = saved.blocks[[b.id for b in saved.blocks].index(anchor.id) + 1]
    assert (new.text, new.origin, new.section) == ("My own paragraph.", "typed", 0)
    saved = editor.insert_text(doc.id, "At the very top.", before_block_id=saved.blocks[0].id,
                               expected_version=saved.version)
    assert saved.blocks[0].text == "At the very top."
    saved = editor.edit_text(doc.id, new.id, "Completely rewritten by me, with new words.",
                             expected_version=saved.version)
    assert pairs.count() == 0
    saved = editor.delete_block(doc.id, new.id, expected_version=saved.version)
    assert new.id not in [b.id for b in saved.blocks]
    labels = [c.label for c in repo.history(doc.id)]
    assert labels == ["type a paragraph after paragraph 1", "type a paragraph before paragraph 1",
                      "edit paragraph 3", "delete paragraph 3"]
    restored = repo.undo(doc.id, expected_version=saved.version)
    assert "Completely rewritten by me, with new words." in texts(restored)


def test_is_trivial():
    old = "The harbor light was red at night, and the boats came home slowly."
    assert is_trivial(old, old.upper())
    assert is_trivial(old, old.replace(",", "").replace(".", "!"))
    assert is_trivial(old, "  " + old.replace(" ", "   ") + "\n")
    assert is_trivial(old, old.replace("slowly", "slowely"))  # a typo
    assert not is_trivial(old, old.replace("red at night", "green in the early morning"))
    assert not is_trivial("One two three four.", "One two three five.")  # 1 of 4 words
    assert not is_trivial(old, "Something else entirely.")
    assert is_trivial("港口的灯在夜里是红色的。", "港口的灯在夜里是红色的！")
    assert not is_trivial("港口的灯在夜里是红色的。", "市场里的水果新鲜又便宜。")


def test_prompt_context_and_capture_rules(repo, library, pairs):
    doc = compose(repo, library, images=0)
    block = doc.text_blocks[2]  # first paragraph of section 2
    messages = prompt_context(doc, block)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[-1]["content"]
    assert "paragraph 1 of 2 of section 2, \"Beta bridges\"" in user and "1 paragraph" in user
    assert doc.text_blocks[1].text[-30:] in user  # the text before it
    assert capture(pairs, doc, block, block.text + " ", "manual", None) is None  # trivial
    stored = capture(pairs, doc, block, "A new text about other things entirely.", "manual", "x")
    assert stored is not None and stored.id is not None and stored.prompt == messages


# -- errors ------------------------------------------------------------------------------


def test_errors_name_the_problem(editor, doc):
    image = doc.image_blocks[0]
    text = doc.text_blocks[0]
    with pytest.raises(NotFoundError):
        editor.preview(doc.id + "x", "rewrite", block_id=text.id)
    with pytest.raises(NotFoundError, match="no block with id 999999"):
        editor.preview(doc.id, "rewrite", block_id=999999)
    with pytest.raises(InputError, match="is an image, not a paragraph"):
        editor.preview(doc.id, "rewrite", block_id=image.id)
    with pytest.raises(InputError, match="is an image, not a paragraph"):
        editor.edit_text(doc.id, image.id, "text", expected_version=doc.version)
    with pytest.raises(InputError, match=f"2001 characters .* limit of "
                                         f"{MAX_EDIT_INSTRUCTION_CHARS}"):
        editor.preview(doc.id, "rewrite", block_id=text.id, instruction="x" * 2001)
    with pytest.raises(InputError, match="20001 characters .* limit of 20000"):
        editor.edit_text(doc.id, text.id, "x" * 20001, expected_version=doc.version)
    with pytest.raises(InputError, match="empty"):
        editor.edit_text(doc.id, text.id, "   ", expected_version=doc.version)
    with pytest.raises(InputError, match="unknown edit operation"):
        editor.preview(doc.id, "translate", block_id=text.id)
    with pytest.raises(InputError, match="is a paragraph, not an image"):
        editor.choose_candidate(doc.id, text.id, "abc", expected_version=doc.version)
    with pytest.raises(InputError, match="COMPOSER_IMAGE_GENERATOR"):
        editor.generate_image(doc.id, image.id, expected_version=doc.version)
    run(editor.preview(doc.id, "rewrite", block_id=text.id, instruction=""))  # empty is fine


# -- Chinese ------------------------------------------------------------------------------


def test_chinese_document_gets_chinese_prompts(repo, library, lm):
    outline = Outline("北方的港口", [SectionPlan("港口", ["船"], 180),
                                   SectionPlan("桥", ["石头"], 180)])
    doc = compose(repo, library, language="zh", images=0, outline=outline)
    editor = Editor(lm, repo)
    proposal = run(editor.preview(doc.id, "abbreviate", block_id=doc.text_blocks[1].id,
                                  instruction="更简洁"))[-1].proposal
    user = lm.calls[-1][0][-1].content
    assert "你正在修改文章《北方的港口》" in user and "只回复新段落" in user and "更简洁" in user
    assert "缩写" in user and lm.calls[-1][0][0].content.startswith("你是")
    editor.accept(proposal, expected_version=doc.version)
    run(editor.preview(doc.id, "regenerate", section=1))
    assert "现在请写第2部分" in lm.calls[-1][0][-1].content


# -- images ------------------------------------------------------------------------------


class TinyGenerator:
    """A text-to-image double: a noisy picture that depends on the prompt and seed."""

    name = "tiny-test-generator"

    def __init__(self):
        self.prompts = []

    def generate(self, prompt, *, seed=0, negative_prompt="", progress=None, cancel=None):
        self.prompts.append(prompt)
        if progress is not None:
            progress(1, 1)
        image = Image.effect_noise((64, 64), 80 + seed % 40).convert("RGB")
        return image.rotate(len(prompt) % 360)


def test_search_again_choose_candidate_and_use_image(editor, repo, library, doc):
    image = doc.image_blocks[0]
    saved = editor.search_again(doc.id, image.id, "a snowy mountain under the sky",
                                expected_version=doc.version)
    block = next(b for b in saved.image_blocks if b.id == image.id)
    # The caption shown is the found image's own, not the words searched for.
    assert block.caption == "a snowy mountain under a blue sky" and block.origin == "search"
    assert block.image_id == block.candidates[0].image_id
    assert library.get(block.image_id).caption == "a snowy mountain under a blue sky"

    other = block.candidates[1].image_id
    saved = editor.choose_candidate(doc.id, image.id, other, expected_version=saved.version)
    block = next(b for b in saved.image_blocks if b.id == image.id)
    assert (block.image_id, block.origin) == (other, "candidate")
    assert block.caption == library.get(other).caption  # swapping swaps the caption
    with pytest.raises(InputError, match="not a candidate"):
        editor.choose_candidate(doc.id, image.id, "f" * 64, expected_version=saved.version)

    uploaded, _ = library.add(png_bytes((10, 200, 200), mark="up"), caption="my photo",
                              owner="ann")
    saved = editor.use_image(doc.id, image.id, uploaded.id, expected_version=saved.version,
                             owner="ann")
    block = next(b for b in saved.image_blocks if b.id == image.id)
    assert (block.image_id, block.origin, block.caption) == (uploaded.id, "upload", "my photo")
    labels = [c.label for c in repo.history(doc.id)]
    assert labels == ["search image 1 again", "choose another picture for image 1",
                      "use an uploaded picture for image 1"]
    undone = repo.undo(doc.id, expected_version=saved.version)
    assert next(b for b in undone.image_blocks if b.id == image.id).image_id == other


def test_search_with_no_match_is_refused(editor, repo, db, tmp_path, doc):
    from storage.images import ImageStore

    empty = Editor(ScriptedLM(), repo, retriever=WordOverlapRetriever(
        ImageStore(db, tmp_path / "other")))
    empty.retriever.store.list = lambda **kwargs: []
    with pytest.raises(InputError, match="no unused image"):
        empty.search_again(doc.id, doc.image_blocks[0].id, "a whale",
                           expected_version=doc.version)
    assert repo.history(doc.id) == []


def test_insert_move_and_delete_images(editor, repo, doc):
    last = doc.text_blocks[-1]
    saved = editor.insert_image(doc.id, last.id, "a busy market with fruit",
                                expected_version=doc.version)
    new = saved.blocks[-1]
    assert isinstance(new, ImageBlock) and new.origin == "search"
    assert new.section == last.section == 2 and new.image_id == new.candidates[0].image_id
    assert new.image_id not in {b.image_id for b in doc.image_blocks}  # not used twice

    saved = editor.move_block(doc.id, new.id, 0, expected_version=saved.version)
    assert saved.blocks[0].id == new.id and saved.blocks[0].section == saved.blocks[1].section
    saved = editor.delete_block(doc.id, new.id, expected_version=saved.version)
    assert new.id not in [b.id for b in saved.blocks]
    assert [c.label for c in repo.history(doc.id)] == [
        "insert an image after paragraph 5", "move image 2", "delete image 1"]
    with pytest.raises(InputError, match="outside"):
        editor.move_block(doc.id, saved.blocks[0].id, 99, expected_version=saved.version)
    back = repo.undo(doc.id, expected_version=saved.version)
    assert back.blocks[0].id == new.id


def test_generate_image_into_the_library(repo, library, pairs, doc):
    generator = TinyGenerator()
    editor = Editor(ScriptedLM(), repo, retriever=WordOverlapRetriever(library), pairs=pairs,
                    generator=generator)
    image = doc.image_blocks[0]
    steps = []
    saved = editor.generate_image(doc.id, image.id, caption="a whale in a quiet bay", seed=3,
                                  expected_version=doc.version, owner="ann",
                                  progress=lambda *a: steps.append(a))
    block = next(b for b in saved.image_blocks if b.id == image.id)
    assert block.origin == "generated" and block.caption == "a whale in a quiet bay"
    stored = library.get(block.image_id)
    assert stored.caption == "a whale in a quiet bay" and stored.owner == "ann"
    assert generator.prompts == ["a whale in a quiet bay"] and steps
    assert [c.label for c in repo.history(doc.id)] == ["generate a picture for image 1"]


# -- the outline after writing -----------------------------------------------------------------


def test_match_sections_by_title_then_renamed_in_place():
    old = Outline("t", [SectionPlan("A", ["a"], 100), SectionPlan("B", ["b"], 100),
                        SectionPlan("C", ["c"], 100)])
    new = Outline("t", [SectionPlan("c ", ["x"], 100), SectionPlan("B2", ["b"], 100),
                        SectionPlan("New", ["n"], 100)])
    assert match_sections(old, new) == [2, 1, None]
    assert match_sections(old, new, [None, 0, 1]) == [None, 0, 1]
    with pytest.raises(InputError, match="at most once"):
        match_sections(old, new, [0, 0, None])


def test_outline_add_remove_reorder_then_write_only_new_sections(editor, repo, doc):
    by_section = {i: [b.id for b in doc.blocks if b.section == i] for i in range(3)}
    image_section = doc.image_blocks[0].section
    new_outline = Outline("Harbors, revised", [
        SectionPlan("Gamma markets", ["fruit"], 100),
        SectionPlan("Delta lanterns", ["lanterns", "winter"], 180),
        SectionPlan("Alpha harbors", ["boats", "light"], 180),
    ])  # Beta removed, Gamma moved first, Delta new
    saved, new_sections = editor.update_outline(doc.id, new_outline,
                                                expected_version=doc.version)
    assert new_sections == [1]
    assert saved.title == "Harbors, revised" and saved.outline == new_outline
    assert [b.id for b in saved.blocks] == by_section[2] + by_section[0]
    assert [b.section for b in saved.blocks] == [0] * len(by_section[2]) + \
        [2] * len(by_section[0])
    assert image_section == 0 and saved.image_blocks[0].section == 2  # moved with its section
    [change] = repo.history(doc.id)
    assert change.label == "change the outline"

    events = list(editor.write_sections(doc.id, new_sections, expected_version=saved.version))
    writes = [e for e in events if e.stage == "write" and e.delta]
    assert len(writes) > 5 and writes[-1].pending
    assert [e.stage for e in events][-2:] == ["save", "done"]
    written = repo.get(doc.id)
    assert [b.section for b in written.blocks] == sorted(b.section for b in written.blocks)
    new_blocks = [b for b in written.blocks if b.section == 1]
    assert len(new_blocks) == 2 and all(b.origin == "compose" for b in new_blocks)
    assert [b.id for b in written.blocks if b.section != 1] == by_section[2] + by_section[0]
    assert [c.label for c in repo.history(doc.id)] == ["change the outline", "write section 2"]

    with pytest.raises(InputError, match="already has text"):
        editor.write_sections(doc.id, [1], expected_version=written.version)
    undone = repo.undo(doc.id, expected_version=written.version)
    undone = repo.undo(doc.id, expected_version=undone.version)
    assert [b.id for b in undone.blocks] == [b.id for b in doc.blocks]
    assert texts(undone) == texts(doc) and undone.outline == doc.outline


def test_write_sections_stop_keeps_what_was_written(repo, library, doc):
    outline = Outline(doc.title, doc.outline.sections + [SectionPlan("Omega", ["end"], 300)])
    editor = Editor(ArticleWriter(), repo)
    saved, new_sections = editor.update_outline(doc.id, outline, expected_version=doc.version)
    assert new_sections == [3]
    cancel = threading.Event()
    events = []
    for event in editor.write_sections(doc.id, new_sections, expected_version=saved.version,
                                       cancel=cancel):
        events.append(event)
        if len(events) == 12:
            cancel.set()
    assert events[-1].stage == "stopped"
    written = repo.get(doc.id)
    partial = [b for b in written.blocks if b.section == 3]
    assert partial and 0 < sum(count_words(b.text) for b in partial) < 300
    assert repo.history(doc.id)[-1].label == "write section 4"


def test_outline_stale_version_writes_nothing(editor, repo, doc):
    with pytest.raises(ConflictError):
        editor.update_outline(doc.id, doc.outline, expected_version=doc.version - 1)
    with pytest.raises(InputError, match="no sections"):
        editor.update_outline(doc.id, Outline("x", []), expected_version=doc.version)
    assert repo.history(doc.id) == []


def test_remarks_about_the_answer_are_not_saved(editor, lm, repo, doc):
    """A small model wraps its paragraph in remarks; only the paragraph is proposed."""
    block = doc.text_blocks[0]
    lm.replies.append("I'll rewrite it with more concrete details. Here's the rewritten "
                      "piece:\n\nSection 1: Origins\nHarbor lights guided fishing boats home "
                      "through fog for centuries, and keepers trimmed the wicks each night. "
                      "Their logbooks still record every ship that passed the point in bad "
                      "weather.\n\n"
                      "This revised paragraph provides a clearer picture of the keepers.")
    previews = list(editor.preview(doc.id, "rewrite", block_id=block.id, seed=1))
    proposal = previews[-1].proposal
    assert proposal.paragraphs == [
        "Harbor lights guided fishing boats home through fog for centuries, and keepers "
        "trimmed the wicks each night. Their logbooks still record every ship that passed the "
        "point in bad weather."]
    saved = editor.accept(proposal, expected_version=doc.version)
    assert saved.text_blocks[0].text == proposal.paragraphs[0]
    assert len(saved.text_blocks) == len(doc.text_blocks)


def test_checks_travel_from_preview_to_the_saved_paragraph_and_back_with_undo(editor, repo,
                                                                               doc):
    composed = doc.text_blocks[1]
    assert composed.checks["how"] == "kept" and "new" in composed.checks["passed"]
    previews = run(editor.preview(doc.id, "rewrite", block_id=composed.id))
    proposal = previews[-1].proposal
    assert len(proposal.checks) == len(proposal.paragraphs) and proposal.checks[0]["passed"]
    saved = editor.accept(proposal, expected_version=doc.version)
    rewritten = next(b for b in saved.text_blocks if b.id == composed.id)
    assert rewritten.checks == proposal.checks[0]
    by_hand = editor.edit_text(doc.id, composed.id, "Harbors are busy at dawn.",
                               expected_version=saved.version)
    assert next(b for b in by_hand.text_blocks if b.id == composed.id).checks is None
    undone = repo.undo(doc.id, expected_version=by_hand.version)
    assert next(b for b in undone.text_blocks if b.id == composed.id).checks == \
        proposal.checks[0]


def test_a_rewrite_that_leaks_the_prompt_is_rewritten_before_it_is_proposed(repo, library,
                                                                            doc):
    leaked = "Here is the rewritten paragraph: Section Headings: List of Sections."
    lm = ArticleWriter(replies=[leaked, leaked, leaked])  # then the writer's clean repair
    editor = Editor(lm, repo, retriever=WordOverlapRetriever(library))
    target = doc.text_blocks[0]
    proposal = run(editor.preview(doc.id, "rewrite", block_id=target.id))[-1].proposal
    assert proposal.paragraphs and "Section Headings" not in proposal.proposed_text
    assert proposal.checks[0]["how"] == "rewritten"
    assert "Problems:" in lm.calls[-1][0][-1].content
