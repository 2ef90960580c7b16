"""models/remote.py: the writer on an OpenAI-compatible server, against a real HTTP fake.

tests/fake_openai.py replays the queued behaviour of each chat request (text in pieces, an
HTTP error, a cut stream, a hang) and records every request body; the `server` fixture fails
a test on any call it did not script. Backoff is made tiny through the constructor.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading

import pytest
from PIL import Image

from composer.cli import main
from composer.config import Settings
from composer.pipeline import Composer
from composer.services import Services
from composer.types import (
    ChatMessage,
    ComposeRequest,
    ComposerError,
    GenerationConfig,
    InputError,
)
from models.lm import LanguageModel
from models.registry import load_language_model
from models.remote import RemoteLM, estimate_tokens
from tests import fake_openai
from tests.fake_article import article_reply, recognise
from tests.fake_openai import Drop, Error, Hang, Text
from tests.fakes import WordOverlapRetriever
from tests.support_pipeline import database, documents, image_store  # noqa: F401
from ui.handlers import write_article

USER = [ChatMessage("system", "You write."), ChatMessage("user", "Write about tea.")]
GREEDY = GenerationConfig(max_new_tokens=64)


@pytest.fixture
def server():
    running = fake_openai.start()
    yield running
    fake_openai.stop(running)
    assert not running.errors, running.errors
    assert not running.queue, f"scripted replies never asked for: {running.queue}"


def settings_for(url: str, tmp_path, **env: str) -> Settings:
    return Settings.from_env({"COMPOSER_HOME": str(tmp_path), "COMPOSER_WRITER_URL": url, **env})


def connect(server, tmp_path, **env: str) -> RemoteLM:
    return RemoteLM.connect(settings_for(server.url, tmp_path, **env), backoff=0.001)


# -- streaming -------------------------------------------------------------------------------

def test_the_reply_streams_piece_by_piece_with_the_config_in_the_body(server, tmp_path):
    lm = connect(server, tmp_path)
    assert isinstance(lm, LanguageModel) and lm.context_length == 4096 and not lm.sees_images
    server.script(Text("Tea is a drink"))
    assert list(lm.stream(USER, GREEDY)) == ["Tea ", "is ", "a ", "drink"]
    body = server.chat_bodies()[0]
    assert body["model"] == "fake-writer" and body["stream"] is True
    assert body["messages"] == [{"role": "system", "content": "You write."},
                                {"role": "user", "content": "Write about tea."}]
    assert body["max_tokens"] == 64 and body["temperature"] == 0.0
    assert "response_format" not in body and "continue_final_message" not in body


def test_sampling_options_reach_the_server(server, tmp_path):
    lm = connect(server, tmp_path)
    server.script(Text("ok"))
    config = GenerationConfig(do_sample=True, temperature=0.9, top_p=0.7, top_k=20, seed=5,
                              repetition_penalty=1.2)
    assert "".join(lm.stream(USER, config)) == "ok"
    body = server.chat_bodies()[0]
    assert (body["temperature"], body["top_p"], body["top_k"], body["seed"],
            body["repetition_penalty"]) == (0.9, 0.7, 20, 5, 1.2)


def test_a_server_that_rejects_the_extra_fields_is_asked_again_without_them(server, tmp_path):
    lm = connect(server, tmp_path)
    server.script(Error(400, "Unrecognized request argument supplied: top_k"), Text("ok"),
                  Text("again"))
    config = GenerationConfig(do_sample=True)
    assert "".join(lm.stream(USER, config)) == "ok"
    assert "".join(lm.stream(USER, config)) == "again"
    first, second, third = server.chat_bodies()
    assert "top_k" in first and "top_k" not in second and "top_k" not in third


def test_stop_strings_are_sent_and_cut_here_even_across_pieces(server, tmp_path):
    lm = connect(server, tmp_path)
    server.script(Text("One two. END more words"), Text("abcSTOPdef", chunks=5),
                  Text("ends with ST"))
    config = GREEDY.replace(stop=("END",))
    assert "".join(lm.stream(USER, config)) == "One two. "
    assert server.chat_bodies()[0]["stop"] == ["END"]
    assert list(lm.stream(USER, GREEDY.replace(stop=("STOP",)))) == ["ab", "c"]
    # the start of a stop string is held back, and given out when the reply ends there
    assert list(lm.stream(USER, GREEDY.replace(stop=("STOP",)))) == ["ends ", "with ", "ST"]


def test_prefix_is_a_trailing_assistant_message_to_continue(server, tmp_path):
    lm = connect(server, tmp_path)
    server.script(Text(" Part one: harbors"), Text("1. Part one", chunks=4))
    assert "".join(lm.stream(USER, GREEDY, prefix="1.")) == " Part one: harbors"
    body = server.chat_bodies()[0]
    assert body["messages"][-1] == {"role": "assistant", "content": "1."}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    # a server that echoes the prefix has it stripped
    assert "".join(lm.stream(USER, GREEDY, prefix="1.")) == " Part one"


def test_beams_and_opera_are_refused_before_any_request(server, tmp_path):
    lm = connect(server, tmp_path)
    for config in (GREEDY.replace(num_beams=3), GREEDY.replace(decoding="opera")):
        with pytest.raises(InputError, match="need a local writer"):
            lm.stream(USER, config)
    assert server.chat_bodies() == []


def test_a_long_prompt_lowers_max_tokens_to_fit_the_context(server, tmp_path):
    server.tokenize = False
    lm = connect(server, tmp_path, COMPOSER_WRITER_CONTEXT="300")
    long = [ChatMessage("user", "x" * 600)]
    server.script(Text("short"))
    assert "".join(lm.stream(long, GenerationConfig(max_new_tokens=512))) == "short"
    assert server.chat_bodies()[0]["max_tokens"] == 300 - estimate_tokens("x" * 600) - 8


# -- retries and errors ----------------------------------------------------------------------

def test_429_is_retried_after_retry_after(server, tmp_path):
    lm = connect(server, tmp_path)
    server.script(Error(429, "Rate limit reached", retry_after="0"), Text("fine now"))
    assert "".join(lm.stream(USER, GREEDY)) == "fine now"
    assert len(server.chat_bodies()) == 2


def test_500_on_every_try_gives_a_clear_error(server, tmp_path):
    lm = connect(server, tmp_path)
    server.script(*[Error(500, "CUDA out of memory")] * 3)
    with pytest.raises(ComposerError) as error:
        list(lm.stream(USER, GREEDY))
    message = str(error.value)
    assert f"the writer server at {server.url} failed 3 times" in message
    assert "HTTP 500: CUDA out of memory" in message and "COMPOSER_WRITER_URL" in message
    assert len(server.chat_bodies()) == 3  # COMPOSER_WRITER_RETRIES=2: one try and two more


def test_a_stream_cut_after_text_is_not_retried(server, tmp_path):
    lm = connect(server, tmp_path)
    server.script(Drop("partial text here"))
    got: list[str] = []
    with pytest.raises(ComposerError, match="broke off the reply after 17 characters"):
        got.extend(lm.stream(USER, GREEDY))  # keeps what came before the error
    assert "".join(got) == "partial text here"  # once: nothing repeated
    assert len(server.chat_bodies()) == 1


def test_a_server_that_sends_nothing_times_out(server, tmp_path):
    lm = RemoteLM(server.url, "fake-writer", timeout=0.3, retries=0)
    server.script(Hang(10))
    with pytest.raises(ComposerError, match=r"failed 1 time \(timed out\)"):
        list(lm.stream(USER, GREEDY))
    assert server.disconnected.wait(5)


def test_cancel_closes_the_stream_and_the_server_sees_it(server, tmp_path):
    lm = connect(server, tmp_path)
    server.script(Text("word " * 200, delay=0.05))
    cancel = threading.Event()
    got = []
    for piece in lm.stream(USER, GREEDY, cancel=cancel):
        got.append(piece)
        if len(got) == 2:
            cancel.set()
    assert len(got) == 2
    assert server.disconnected.wait(5) and server.disconnects == 1


@pytest.mark.parametrize("behaviour, words", [
    (Error(401, "Incorrect API key provided"), "COMPOSER_WRITER_KEY"),
    (Error(404, "The model `fake-writer` does not exist."), "COMPOSER_WRITER_MODEL"),
    (Error(400, "prompt is malformed"), "rejected the request (HTTP 400: prompt is malformed)"),
])
def test_errors_while_composing_name_what_to_fix(server, tmp_path, behaviour, words):
    lm = connect(server, tmp_path)
    server.script(behaviour)
    with pytest.raises(ComposerError, match=words.replace("(", r"\(").replace(")", r"\)")):
        list(lm.stream(USER, GREEDY))
    assert len(server.chat_bodies()) == 1


def test_a_server_gone_mid_compose_is_named(tmp_path):
    running = fake_openai.start()
    lm = RemoteLM.connect(settings_for(running.url, tmp_path), backoff=0.001)
    fake_openai.stop(running)
    with pytest.raises(ComposerError, match=r"failed 3 times \(ConnectionRefused\)"):
        list(lm.stream(USER, GREEDY))


# -- connecting ------------------------------------------------------------------------------

def test_a_server_that_does_not_answer_is_named_at_connect(tmp_path):
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ComposerError) as error:
        RemoteLM.connect(settings_for(url, tmp_path))
    assert str(error.value) == (f"the writer server at {url} does not answer "
                                "(ConnectionRefused): start it, or unset COMPOSER_WRITER_URL "
                                "to use the embedded model")


def test_a_model_it_does_not_serve_is_named_with_the_served_ones(server, tmp_path):
    with pytest.raises(ComposerError, match=r"serves \['fake-writer'\], not 'nope': set "
                                            "COMPOSER_WRITER_MODEL to one of them"):
        connect(server, tmp_path, COMPOSER_WRITER_MODEL="nope")


def test_a_bad_key_names_the_variable_and_a_good_one_is_sent(server, tmp_path):
    server.key = "sesame"
    with pytest.raises(ComposerError, match="refused the API key.*COMPOSER_WRITER_KEY"):
        connect(server, tmp_path, COMPOSER_WRITER_KEY="wrong")
    lm = connect(server, tmp_path, COMPOSER_WRITER_KEY="sesame")
    server.script(Text("ok"))
    assert "".join(lm.stream(USER, GREEDY)) == "ok"


def test_a_url_that_is_not_an_api_base_is_named(server, tmp_path):
    with pytest.raises(ComposerError, match="not a model list.*ends in /v1"):
        RemoteLM.connect(settings_for(server.url.removesuffix("/v1"), tmp_path))


def test_model_context_and_vision_come_from_the_server_or_the_settings(server, tmp_path):
    server.models = [{"id": "small"}, {"id": "Qwen/Qwen2-VL-7B-Instruct", "max_model_len": 32768}]
    lm = connect(server, tmp_path)
    assert (lm.model, lm.context_length, lm.sees_images) == ("small", 8192, False)
    lm = connect(server, tmp_path, COMPOSER_WRITER_MODEL="Qwen/Qwen2-VL-7B-Instruct")
    assert (lm.context_length, lm.sees_images) == (32768, True)
    lm = connect(server, tmp_path, COMPOSER_WRITER_MODEL="Qwen/Qwen2-VL-7B-Instruct",
                 COMPOSER_WRITER_CONTEXT="4096", COMPOSER_WRITER_VISION="0")
    assert (lm.context_length, lm.sees_images) == (4096, False)


@pytest.mark.parametrize("env, words", [
    ({"COMPOSER_WRITER_URL": "localhost:8000"}, "COMPOSER_WRITER_URL='localhost:8000' is not"),
    ({"COMPOSER_WRITER_TIMEOUT": "0"}, "COMPOSER_WRITER_TIMEOUT=0.0 is outside (0, 3600]"),
    ({"COMPOSER_WRITER_RETRIES": "50"}, "COMPOSER_WRITER_RETRIES=50 is outside 0..10"),
    ({"COMPOSER_WRITER_CONTEXT": "10"}, "COMPOSER_WRITER_CONTEXT=10 is under 256"),
    ({"COMPOSER_WRITER_VISION": "maybe"}, "COMPOSER_WRITER_VISION='maybe' is not one of"),
])
def test_bad_writer_settings_name_the_variable_and_the_limit(tmp_path, env, words):
    with pytest.raises(ValueError) as error:
        Settings.from_env({"COMPOSER_HOME": str(tmp_path), **env})
    assert words in str(error.value)


def test_the_key_defaults_to_openai_api_key_and_stays_out_of_repr(tmp_path):
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-secret"})
    assert settings.writer_key == "sk-secret" and "sk-secret" not in repr(settings)
    assert Settings.from_env({}).writer_key == "none"


# -- schema, images, tokens ------------------------------------------------------------------

def test_json_schema_is_sent_as_response_format(server, tmp_path):
    lm = connect(server, tmp_path)
    assert lm.supports_json_schema
    server.script(Text('{"title": "Tea"}'))
    config = GREEDY.replace(json_schema=json.dumps({"type": "object"}))
    assert "".join(lm.stream(USER, config)) == '{"title": "Tea"}'
    assert server.chat_bodies()[0]["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "outline", "schema": {"type": "object"}, "strict": True}}


@pytest.mark.parametrize("refusal", [
    Error(400, "response_format json_schema is not supported"),
    Error(422, "body.response_format.type: Input should be 'text' or 'json_object'"),
    # what llama-cpp-python 0.3.36's server answers: its validation error as a 500
    Error(500, "1 validation error: ('body', 'response_format', 'type') Input should be "
               "'text' or 'json_object'"),
])
def test_a_server_without_response_format_is_asked_again_and_remembered(server, tmp_path,
                                                                         refusal):
    lm = connect(server, tmp_path)
    server.script(refusal, Text("{}"))
    config = GREEDY.replace(json_schema=json.dumps({"type": "object"}))
    assert "".join(lm.stream(USER, config)) == "{}"
    first, second = server.chat_bodies()
    assert "response_format" in first and "response_format" not in second
    assert lm.supports_json_schema is False  # the planner then parses free text


def test_images_go_as_downscaled_data_urls_before_the_text(server, tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (2048, 1024), (200, 30, 30)).save(path)
    lm = connect(server, tmp_path, COMPOSER_WRITER_VISION="1")
    server.script(Text("A red picture."), Text("Text only."))
    message = ChatMessage("user", "Describe it.", images=(str(path),))
    assert "".join(lm.stream([message], GREEDY)) == "A red picture."
    image_part, text_part = server.chat_bodies()[0]["messages"][0]["content"]
    assert text_part == {"type": "text", "text": "Describe it."}
    url = image_part["image_url"]["url"]
    assert image_part["type"] == "image_url" and url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (1024, 512)
    blind = connect(server, tmp_path)  # fake-writer is no VL model: auto leaves images out
    assert "".join(blind.stream([message], GREEDY)) == "Text only."
    assert server.chat_bodies()[1]["messages"][0]["content"] == "Describe it."


def test_count_tokens_asks_tokenize_once_and_falls_back_to_an_estimate(server, tmp_path):
    lm = connect(server, tmp_path)
    assert lm.count_tokens("a b c") == 3 and lm.count_tokens("a b c") == 3
    asked = [body for method, path, body in server.requests if path == "/tokenize"]
    assert asked == [{"model": "fake-writer", "prompt": "a b c", "content": "a b c"}]
    server.tokenize = False
    other = fake_openai.start()
    try:
        other.tokenize = False
        lm = RemoteLM.connect(settings_for(other.url, tmp_path))
        assert lm.count_tokens("abcdefg") == estimate_tokens("abcdefg") == 3
        assert lm.count_tokens("éé") == 2  # 4 UTF-8 bytes
        assert sum(path == "/tokenize" for _, path, _ in other.requests) == 1  # remembered
    finally:
        fake_openai.stop(other)


# -- wiring ----------------------------------------------------------------------------------

def test_the_registry_loads_the_server_writer_and_refuses_local_only_options(server, tmp_path):
    lm = load_language_model(settings_for(server.url, tmp_path, COMPOSER_MODEL="not/loaded"))
    assert isinstance(lm, RemoteLM) and lm.name == f"fake-writer @ {server.url}"
    with pytest.raises(ComposerError, match="COMPOSER_WRITER_ADAPTER work with a local writer"):
        load_language_model(settings_for(server.url, tmp_path, COMPOSER_WRITER_ADAPTER="dpo"))
    with pytest.raises(ComposerError, match="COMPOSER_VISION_MODEL work with a local writer"):
        load_language_model(settings_for(server.url, tmp_path, COMPOSER_VISION_MODEL="clip"))


OUTLINE = {"title": "Harbors of the North", "sections": [
    {"title": "Fishing Towns", "key_points": ["boats at sunrise", "the morning catch"]},
    {"title": "Lighthouses", "key_points": ["red towers on cliffs", "keepers and lamps"]},
]}


def article_server(server) -> list[tuple[str, str]]:
    """Make `server` answer a whole composition: the outline request (the one with a
    response_format) with OUTLINE, every other composer prompt with the fake article
    writer's reply (tests/fake_article.py); returns the (prompt kind, reply) it sent."""
    sent: list[tuple[str, str]] = []

    def respond(body: dict) -> str:
        messages = [ChatMessage(m["role"], m["content"]) for m in body["messages"]]
        prefix = messages.pop().content if body.get("continue_final_message") else ""
        kind = recognise(messages[-1].content)[0]
        if "response_format" in body:
            assert kind == "outline_json"
            reply = json.dumps(OUTLINE)
        else:
            reply = article_reply(messages, prefix)
        sent.append((kind, reply))
        return reply

    server.responder = respond
    return sent


def test_a_whole_composition_with_the_server_as_writer(server, tmp_path, documents,  # noqa: F811
                                                       image_store):  # noqa: F811
    sent = article_server(server)
    lm = connect(server, tmp_path)
    composer = Composer(lm, documents, WordOverlapRetriever(image_store), image_threshold=0.0)
    doc = composer.compose_document(ComposeRequest("Harbors of the north", target_words=400,
                                                   images=1))
    assert doc.status == "done" and doc.title == "Harbors of the north"
    assert [s.title for s in doc.outline.sections] == ["Fishing Towns", "Lighthouses"]
    kinds = [kind for kind, _ in sent]
    assert kinds[0] == "outline_json" and "response_format" in server.chat_bodies()[0]
    assert len(server.chat_bodies()) == len(sent) and {"paragraph", "slots"} <= set(kinds)
    paragraphs = [reply for kind, reply in sent if kind == "paragraph"]
    assert [block.text for block in doc.text_blocks] == paragraphs
    assert len(doc.image_blocks) == 1


def test_the_cli_composes_with_the_server_as_writer(server, tmp_path, monkeypatch, capsys):
    sent = article_server(server)
    for name in ("DATABASE_URL", "OPENAI_API_KEY", "COMPOSER_MODEL", "COMPOSER_WRITER_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COMPOSER_WRITER_URL", server.url)
    code = main(["compose", "Harbors of the north", "--words", "300", "--text-only"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Saved document" in out and "(done," in out
    article = out.split("Saved document")[0]
    printed = [" ".join(part.split()) for part in article.split("\n\n") if part.strip()]
    replies = [" ".join(reply.split()) for kind, reply in sent[1:]]
    assert len(printed) >= 2 and all(paragraph in replies for paragraph in printed)
    assert sent[0][0] == "outline_json" and len(sent) == len(server.chat_bodies())


def test_the_page_streams_a_composition_from_the_server(server, tmp_path):
    sent = article_server(server)
    services = Services(settings_for(server.url, tmp_path))
    updates = list(write_article(services, ComposeRequest("Harbors of the north",
                                                          target_words=300, text_only=True),
                                 None, "ann", threading.Event(), interval=0.0))
    first_paragraph = next(reply for kind, reply in sent if kind == "paragraph")
    opening = " ".join(first_paragraph.split()[:3])
    streaming = [u for u in updates if not u.finished and opening in " ".join(u.html.split())]
    assert streaming, "the first paragraph never showed before the article was done"
    assert updates[-1].finished and updates[-1].document.status == "done"
