"""Model jobs behind the UI: stop flags, checks that answer before the queue, and a
composition stepped from Gradio-like worker threads with a stop in the middle."""

from __future__ import annotations

import threading

import pytest

from composer.types import InputError
from composer.validation import visible_text
from tests.support_app import services  # noqa: F401
from tests.support_threads import _DONE, next_in_new_thread
from ui import handlers as h
from ui.jobs import JobFlags

OWNER = "key:owner-of-these-tests-0123456789"


def test_a_flag_armed_before_the_queue_is_the_one_the_job_takes():
    flags = JobFlags()
    armed = flags.arm("tab")
    assert flags.stop("tab")  # Stop while the job waits in line
    taken = flags.start("tab")
    assert taken is armed and taken.is_set()
    flags.finish("tab", taken)
    assert not flags.stop("tab")  # nothing armed or running: Stop does nothing


def test_a_job_started_without_a_check_gets_a_fresh_flag_that_stop_sets():
    flags = JobFlags()
    flag = flags.start("tab")
    assert not flag.is_set() and flags.stop("tab") and flag.is_set()
    assert not flags.start("other").is_set()  # one tab's Stop leaves the others alone


@pytest.mark.parametrize("instruction, words, message", [
    ("", 800, "instruction is empty"),
    ("\u200b\u200d\u202e \u2066\ufeff\n", 800, "instruction is empty"),
    ("x" * 100_001, 800, "instruction is 100,001 characters"),
    ("Gardens", 5, "target words is 5; it must be between 50 and 10000"),
    ("Gardens", 80.5, "target words must be a whole number"),
])
def test_the_form_check_names_the_value_and_the_limit(instruction, words, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        h.check_form(instruction, "", None, "", None, h.ComposeOptions(words=words))


def test_the_form_check_covers_references_and_an_edited_outline():
    with pytest.raises(InputError, match="11 reference images"):
        h.check_form("Gardens", "", ["a.png"] * 11, "", None, h.ComposeOptions())
    with pytest.raises(InputError, match="budget is 5 words"):
        h.check_form("Gardens", "", None, "Gardens", [["Soil", "", 5]], h.ComposeOptions())
    h.check_form("Gardens", "", None, "Gardens", [["Soil", "compost", 200]], h.ComposeOptions())


def test_visible_text_drops_format_characters_only():
    assert visible_text("\u200bLight\u200dhouses\u202e ") == "Lighthouses"
    assert visible_text("灯塔\ufeff") == "灯塔"


def test_a_composition_stepped_from_many_threads_stops_within_a_few_pieces(services):  # noqa: F811
    flag = threading.Event()
    request = h.build_request("Tea", "", h.ComposeOptions(words=800))
    updates = h.write_article(services, request, None, OWNER, flag, interval=0.0)
    seen, after_stop = 0, 0
    while True:
        update = next_in_new_thread(updates)
        if update is _DONE:
            break
        seen += 1
        if flag.is_set():
            after_stop += 1
        elif seen == 30:
            threading.Thread(target=flag.set).start()  # Stop comes from another thread
            threading.Event().wait(0.05)
    doc = h.owned_document(services, update_id(services), OWNER)
    assert doc.status == "interrupted" and doc.text_blocks
    assert after_stop <= 4, after_stop  # the stopped view, the saved rest, the final view


def update_id(services) -> str:  # noqa: F811
    return services.documents.list(owner=OWNER, limit=1)[0].id


def test_an_edit_preview_stepped_from_many_threads_matches_one_thread(services):  # noqa: F811
    from tests.support_threads import drain_across_threads
    from tests.test_ui_handlers import compose
    from ui import editing as ed

    doc = h.owned_document(services, compose(services, owner=OWNER)[-1].document_id, OWNER)
    block = doc.text_blocks[0].id
    one = [text for text, _, _ in ed.preview(services, doc.id, OWNER, "expand", block, "",
                                             threading.Event())]
    many = [text for text, _, _ in drain_across_threads(
        ed.preview(services, doc.id, OWNER, "expand", block, "", threading.Event()))]
    assert many == one and len(many) > 3
