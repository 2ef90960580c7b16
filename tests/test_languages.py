"""Which languages the writer writes: a Chinese request to an English-only writer is refused
before any work (CLI exit 2, the web form's check), naming models that can; lengths are named
in characters for Chinese."""

import re
import threading

import pytest

from composer.cli import main
from composer.config import Settings
from composer.languages import (
    check_writer_language,
    length_text,
    writer_languages,
)
from composer.types import ComposeRequest, ComposerError, InputError
from tests.fakes import ArticleWriter, ScriptedLM
from tests.support_app import make_services, services  # noqa: F401
from ui import handlers as h

# Phrases of the English prompt templates (composer/prompts.py, edit_prompts.py, the planner's);
# the model's own text (here the scripted outline, in English) may appear in a prompt.
ENGLISH_TEMPLATE = re.compile(
    r"You are (?:writing|editing|a skilled)|Write (?:about|an outline|a new)|Now write (?:section|paragraph)|"
    r"Reply with|Give a short|Describe, in one|Answer with|Here is an article|Which image|"
    r"Outline:|Instruction:|Reference material|The article so far|The paragraph|Draft paragraph|"
    r"Problems:")
CAPABLE = ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-7B-Instruct",
           "internlm/internlm2_5-7b-chat")


def settings(tmp_path, **env):
    return Settings.from_env(env, home=tmp_path)


@pytest.mark.parametrize("model, languages", [
    ("embedded", ("en",)),
    ("HuggingFaceTB/SmolLM2-1.7B-Instruct", ("en",)),
    ("/models/gpt2", ("en",)),
    ("Qwen/Qwen2.5-7B-Instruct", ("en", "zh")),
    ("tests.fakes:article_factory", ("en", "zh")),
])
def test_the_writers_languages_come_from_its_name(tmp_path, model, languages):
    assert writer_languages(settings(tmp_path, COMPOSER_MODEL=model)) == languages


def test_the_operator_and_the_backend_can_declare_languages(tmp_path):
    both = settings(tmp_path, COMPOSER_MODEL_LANGUAGES=" zh, en ")
    assert writer_languages(both) == ("zh", "en")  # the operator's word beats the name
    english = ScriptedLM()
    english.languages = ("en",)
    assert writer_languages(settings(tmp_path, COMPOSER_MODEL="x/y"), english) == ("en",)
    assert writer_languages(settings(tmp_path), ScriptedLM()) == ("en", "zh")
    with pytest.raises(ComposerError, match=r"COMPOSER_MODEL_LANGUAGES='en,fr'.*\['fr'\]"):
        writer_languages(settings(tmp_path, COMPOSER_MODEL_LANGUAGES="en,fr"))


def test_the_refusal_names_the_model_models_that_can_and_how_to_set_one(tmp_path):
    with pytest.raises(InputError) as refused:
        check_writer_language("zh", settings(tmp_path))
    message = str(refused.value)
    assert "embedded (SmolLM2-135M-Instruct) writes English only" in message
    assert "Chinese (zh)" in message and all(model in message for model in CAPABLE)
    assert "COMPOSER_MODEL" in message and "--model" in message
    assert "COMPOSER_MODEL_LANGUAGES=en,zh" in message
    check_writer_language("en", settings(tmp_path))  # English is fine
    with pytest.raises(InputError, match="writes Chinese only.*COMPOSER_MODEL_LANGUAGES=zh,en$"):
        check_writer_language("en", settings(tmp_path, COMPOSER_MODEL_LANGUAGES="zh"))
    check_writer_language("zh", settings(tmp_path, COMPOSER_MODEL="Qwen/Qwen2.5-7B-Instruct"))


def test_cli_refuses_chinese_with_the_embedded_writer_before_loading_it(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("COMPOSER_MODEL", raising=False)

    def no_loading(settings):
        raise AssertionError("the model must not load for a refused request")

    monkeypatch.setattr("models.registry.load_language_model", no_loading)
    code = main(["compose", "茶的历史", "--lang", "zh", "--words", "300", "--text-only"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("error: the writer model embedded (SmolLM2-135M-Instruct) "
                                   "writes English only")
    assert "Qwen/Qwen2.5-7B-Instruct" in captured.err
    assert main(["list"]) == 0 and "No documents yet" in capsys.readouterr().out


def test_the_form_check_refuses_chinese_for_an_english_only_writer(tmp_path):
    english = ScriptedLM()
    english.languages = ("en",)
    services = make_services(tmp_path / "home", lm=english)
    try:
        options = h.ComposeOptions(language="zh", words=300, text_only=True)
        with pytest.raises(InputError, match="writes English only"):
            h.check_form("茶的历史", "", None, "", None, options, services)
        h.check_form("茶的历史", "", None, "", None, options)  # without services: no model check
        request = h.build_request("茶的历史", "", options)
        with pytest.raises(InputError, match="writes English only"):
            next(h.write_article(services, request, None, "key:x", cancel=None))
        assert english.calls == [] and services.documents.list() == []
    finally:
        services.db.dispose()


def test_a_writer_that_declares_chinese_composes_a_chinese_article(services):  # noqa: F811
    options = h.ComposeOptions(language="zh", words=300, text_only=True)
    h.check_form("茶的历史", "", None, "", None, options, services)
    request = h.build_request("茶的历史", "", options)
    updates = list(h.write_article(services, request, None, "key:x", threading.Event()))
    doc = updates[-1].document
    assert doc.language == "zh" and doc.status == "done" and doc.text_blocks


def test_lengths_are_words_in_english_and_characters_in_chinese():
    assert length_text(1200, "en") == "1,200 words"
    assert length_text(118, "zh") == "118 characters (字)"


def test_chinese_length_messages_say_characters():
    import io

    from composer.pipeline import check_outline
    from composer.progress import TerminalProgress
    from composer.types import Outline, ProgressEvent, SectionPlan
    from composer.validation import check_request

    with pytest.raises(InputError, match=r"target length in characters \(字\) is 10; it must"):
        check_request(ComposeRequest("茶的历史", language="zh", target_words=10))
    with pytest.raises(InputError, match=r"an article of 100 characters \(字\) has paragraphs"):
        check_request(ComposeRequest("茶的历史", language="zh", target_words=100, images=5))
    with pytest.raises(InputError, match=r"section 1 budget is 5 characters \(字\)"):
        check_outline(Outline("茶", [SectionPlan("起源", [], 5)]), "zh")
    err = io.StringIO()
    TerminalProgress(out=io.StringIO(), err=err, language="zh")(
        ProgressEvent("write", "写第1部分", words=118))
    assert "· 118 characters (字)" in err.getvalue()


def test_cli_names_a_chinese_articles_length_in_characters(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    code = main(["--model", "tests.fakes:article_factory", "compose", "茶的历史", "--lang",
                 "zh", "--words", "200", "--text-only"])
    out = capsys.readouterr().out
    assert code == 0 and "characters (字)" in out.rsplit("Saved document", 1)[1]
    assert main(["list"]) == 0 and "字  茶的历史" in capsys.readouterr().out


def test_the_composer_refuses_a_language_its_writer_does_not_declare(tmp_path):
    from composer.pipeline import Composer

    english = ArticleWriter()
    english.languages = ("en",)
    services = make_services(tmp_path / "home", lm=english)
    try:
        composer = Composer(english, services.documents)
        with pytest.raises(InputError, match=r"the writer model scripted writes English only"):
            next(composer.compose(ComposeRequest("茶的历史", language="zh", text_only=True)))
        with pytest.raises(InputError, match="embedded|English only"):  # through Services
            next(services.composer(with_images=False).compose(
                ComposeRequest("茶的历史", language="zh", text_only=True)))
        assert english.calls == [] and services.documents.list() == []
        doc = composer.compose_document(ComposeRequest("Tea", target_words=100, text_only=True))
        assert doc.status == "done"
    finally:
        services.db.dispose()


def test_an_english_only_writer_does_not_edit_a_chinese_article(tmp_path):
    from composer.types import TextBlock
    from ui import editing as ed

    english = ScriptedLM()
    english.languages = ("en",)
    services = make_services(tmp_path / "home", lm=english)
    try:
        doc = services.documents.create("茶", "茶的历史", "zh", {}, None, owner="key:x")
        services.documents.append_blocks(doc.id, [TextBlock("茶起源于中国。")])
        block = services.documents.get(doc.id).blocks[0]
        with pytest.raises(InputError, match="writes English only"):
            next(ed.preview(services, doc.id, "key:x", "rewrite", block.id, "",
                            threading.Event()))
        assert english.calls == []
    finally:
        services.db.dispose()


def test_every_prompt_of_a_chinese_article_is_chinese(services):  # noqa: F811
    from composer.prompts import SYSTEM
    from ui import editing as ed

    lm = services.lm
    options = h.ComposeOptions(language="zh", words=400, images="1")
    request = h.build_request("茶的历史", "", options)
    doc = list(h.write_article(services, request, None, "key:x", threading.Event()))[-1].document
    block = doc.text_blocks[0]
    for _ in ed.preview(services, doc.id, "key:x", "rewrite", block.id, "", threading.Event()):
        pass
    assert len(lm.calls) >= 4
    for messages, prefix, _ in lm.calls:
        system = [m.content for m in messages if m.role == "system"]
        user = " ".join(m.content for m in messages if m.role == "user")
        assert system == [SYSTEM["zh"]], user[:80]
        assert not ENGLISH_TEMPLATE.search(user), user[:200]
        # "Title:", "Photo:" ... pre-fill English answers (the <Seg tags are the protocol's)
        assert not re.search(r"[A-Za-z]", prefix.replace("<Seg", "")), prefix
