"""Constrained decoding (models/constrained.py): a tiny random model under the outline's JSON
schema always returns JSON valid under it, greedy and sampled."""

from __future__ import annotations

import json

import pytest

from composer.outline_json import outline_schema, partial_outline
from composer.types import ChatMessage, GenerationConfig
from models.lm import TransformersLM, check_generation_config
from tests.tiny_models import build_tiny_lm

SCHEMA = outline_schema(2, 2, title_chars=12, heading_chars=12, point_chars=12)
MESSAGES = [ChatMessage("user", "Write an article about bridges, gardens and forests.")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return TransformersLM(build_tiny_lm(tmp_path_factory.mktemp("constrained-lm")),
                          device="cpu")


def assert_valid_outline(text: str) -> None:
    data = json.loads(text)
    assert set(data) == {"title", "sections"}
    assert isinstance(data["title"], str) and 1 <= len(data["title"]) <= 12
    assert len(data["sections"]) == 2
    for section in data["sections"]:
        assert set(section) == {"title", "key_points"}
        assert 1 <= len(section["title"]) <= 12
        assert 1 <= len(section["key_points"]) <= 2
        for point in section["key_points"]:
            assert 1 <= len(point) <= 12
            assert not set(point) & set('<>"\\') and all(ord(c) >= 32 for c in point)


@pytest.mark.parametrize("sample,seed", [(False, 0), (True, 0), (True, 1), (True, 2), (True, 3)])
def test_tiny_model_under_schema_always_returns_valid_json(tiny, sample, seed):
    config = GenerationConfig(max_new_tokens=400, do_sample=sample, seed=seed, json_schema=SCHEMA,
                              temperature=1.0, top_p=1.0, top_k=0)
    reply = "".join(tiny.stream(MESSAGES, config))
    assert_valid_outline(reply)
    title, sections = partial_outline(reply)
    assert title == json.loads(reply)["title"] and len(sections) == 2


def test_without_schema_the_tiny_model_writes_no_json(tiny):
    reply = "".join(tiny.stream(MESSAGES, GenerationConfig(max_new_tokens=40)))
    with pytest.raises(ValueError):
        json.loads(reply)


def test_beams_with_a_schema_decode_one_valid_reply(tiny):
    config = GenerationConfig(max_new_tokens=400, num_beams=3, json_schema=SCHEMA)
    assert_valid_outline("".join(tiny.stream(MESSAGES, config)))


def test_a_schema_that_is_not_json_is_refused_before_any_work():
    with pytest.raises(ValueError, match="json_schema is not valid JSON"):
        check_generation_config(GenerationConfig(json_schema="{not json"))
    with pytest.raises(ValueError, match="must be a JSON object"):
        check_generation_config(GenerationConfig(json_schema="[1, 2]"))


def test_partial_outline_reads_only_whole_sections():
    text = json.dumps({"title": "Kites", "sections": [
        {"title": "Lift", "key_points": ["wind"]}, {"title": "Lines", "key_points": ["silk"]}]})
    cut = text.index('{"title": "Lines"') + 5
    assert partial_outline(text[:cut]) == ("Kites", [{"title": "Lift", "key_points": ["wind"]}])
    assert partial_outline(text)[1][1]["title"] == "Lines"
    assert partial_outline("I cannot do that.") == (None, [])


def test_without_xgrammar_the_writer_says_it_cannot_take_a_schema():
    # scripts/setup.sh installs xgrammar; a bare requirements.txt install (a Space) may not:
    # then outlines are parsed from free text instead of failing at import.
    import subprocess
    import sys

    code = ("import sys; sys.modules['xgrammar'] = None\n"
            "from models.lm import TransformersLM\n"
            "print(TransformersLM.supports_json_schema)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
    from models.lm import TransformersLM

    assert TransformersLM.supports_json_schema is True  # installed here


def test_the_heading_of_the_section_being_written_is_read_before_its_key_points():
    from composer.outline_json import pending_section_title

    head = '{"title": "Bees", "sections": [{"title": "Hives", "key_points": ["wax"]}, '
    assert pending_section_title(head) is None
    assert pending_section_title(head + '{"title": "Nect') is None  # still open
    assert pending_section_title(head + '{"title": "Nectar"') == "Nectar"
    assert pending_section_title(head + '{"title": "Nectar", "key_points": ["fl') == "Nectar"
    assert pending_section_title(head + '{"title": "Nectar", "key_points": ["f"]}') is None
    assert pending_section_title('{"title": "Bees", "sections": [{"title": "Hives"') == "Hives"
