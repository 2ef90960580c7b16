"""The UI in the browser's language: labels, messages, the progress line, the checks line."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from composer.render import checks_html
from ui.i18n import LABELS, MESSAGES, language_of, say
from ui.outline_table import documents_value, outline_value
from ui.progress_line import Progress, clock, progress_line


def test_every_label_and_message_exists_in_both_languages_with_the_same_fields():
    for table in (LABELS, MESSAGES):
        assert set(table["en"]) == set(table["zh"])
        for key, english in table["en"].items():
            fields = set(re.findall(r"{(\w+)}", english))
            assert set(re.findall(r"{(\w+)}", table["zh"][key])) == fields, key
            assert table["zh"][key] != "" and english != ""


@pytest.mark.parametrize("header, language", [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("zh-TW", "zh"), ("en-US,en;q=0.9", "en"),
    ("fr-FR,zh;q=0.5", "en"), ("", "en"), (None, "en"),
])
def test_the_language_is_the_browsers_first_choice(header, language):
    headers = {} if header is None else {"accept-language": header}
    assert language_of(SimpleNamespace(headers=headers)) == language
    assert language_of(None) == "en"


def test_a_missing_message_names_itself():
    with pytest.raises(KeyError, match="no UI message 'nope'"):
        say("en", "nope")


def test_the_progress_line_says_stage_words_and_time_in_each_language():
    writing = Progress("draft", section=1, sections=5, words=312, seconds=41.7, fraction=0.4)
    clock_41 = '<span class="xc-clock">0:41</span>'
    assert progress_line("en", writing) == (
        '<progress value="0.400" max="1"></progress> Writing section 2 of 5 · 312 words · '
        + clock_41)
    assert progress_line("zh", writing).endswith("正在撰写第 2/5 部分 · 312 字 · " + clock_41)
    done = Progress("done", words=812, seconds=3725)
    assert progress_line("en", done) == "✓ Done · 812 words · 1:02:05"
    assert "<progress" not in progress_line("zh", Progress("stopped", words=5, seconds=3))
    assert progress_line("en", Progress("plan", sections=3)).startswith(
        '<progress value="0.000" max="1"></progress> Planning the outline · 3 sections')
    assert "Planning the outline · 1 section ·" in progress_line("en", Progress("plan",
                                                                            sections=1))
    assert "Placing images" in progress_line("en", Progress("caption", fraction=2.0))
    assert 'value="1.000"' in progress_line("en", Progress("caption", fraction=2.0))
    assert clock(-1) == "0:00" and clock(59.9) == "0:59" and clock(60) == "1:00"


def test_tables_carry_their_headers_in_the_language():
    assert outline_value("zh", [["港口", "历史", 200]]) == {
        "headers": ["标题", "要点（用 ; 分隔）", "字数"], "data": [["港口", "历史", 200]]}
    assert outline_value("en", [])["headers"][2] == "Words"
    assert documents_value("zh", [])["headers"] == ["标题", "更新时间", "状态", "字数"]


def test_the_checks_line_follows_the_articles_language_and_escapes():
    checks = {"passed": ["clean", "on_topic"], "failed": {"new": "<b>repeats</b>"},
              "how": "trimmed", "drafts": 3}
    english = checks_html(checks)
    assert "✓ clean · on topic" in english and "bad sentences removed, 3 drafts read" in english
    chinese = checks_html(checks, "zh")
    assert "✓ 干净 · 切题" in chinese and "✗ 不重复" in chinese and "读了 3 份草稿" in chinese
    assert "<b>" not in chinese and "&lt;b&gt;repeats" in chinese
    assert checks_html(checks, "fr") == english  # a language without labels reads English
