"""Compositions as durable jobs on Redis: real Redis (127.0.0.1:6379, a database of its own),
real `python -m composer worker` processes, SQLite shared through the data directory.

The writer is the fake article writer (tests/fakes.py), deterministic per prompt, so a job
resumed after its worker was killed must end with the very text an uninterrupted run writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from composer import queue
from composer.config import Settings
from composer.jobs import LocalJobs, event_from_json, event_to_json
from composer.services import Services
from composer.types import ComposeRequest, GenerationConfig, InputError, ProgressEvent, TextBlock
from ui.handlers import follow_article, write_article
from tests.fakes import ArticleWriter

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/13"
FACTORY = "tests.fakes:slow_article_factory"


@pytest.fixture
def redis_url():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis answers at 127.0.0.1:6379")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


def settings_for(tmp_path: Path, redis_url: str, **changes) -> Settings:
    return Settings.from_env({}, home=tmp_path / "home", redis_url=redis_url,
                             worker_heartbeat=2.0, model=FACTORY, **changes)


def start_worker(tmp_path: Path, redis_url: str, name: str) -> subprocess.Popen:
    env = {**os.environ, "COMPOSER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT),
           "COMPOSER_REDIS_URL": redis_url, "COMPOSER_WORKER_HEARTBEAT": "2",
           "COMPOSER_MODEL": FACTORY}
    env.pop("DATABASE_URL", None)
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen([sys.executable, "-m", "composer", "worker"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def request(text: str = "Harbor lights through the seasons") -> ComposeRequest:
    # one draft per paragraph: the test is about jobs, not about checked writing
    return ComposeRequest(instruction=text, target_words=300, text_only=True,
                          generation=GenerationConfig(candidates=1))


def texts(services: Services, doc_id: str) -> list[tuple[int, str]]:
    return [(block.section, block.text) for block in services.documents.get(doc_id).text_blocks]


def stop_all(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()


def test_events_cross_processes_as_json_unchanged():
    event = ProgressEvent("write", "Section 1", section=0, sections=3, words=12, delta="Hi.\n\n",
                          fraction=0.25, document_id="d1",
                          block=TextBlock("Hi.", section=0, id=7, checks={"passed": ["new"]}))
    assert event_from_json(event_to_json(event)) == event
    assert event_from_json(event_to_json(ProgressEvent("done"))) == ProgressEvent("done")


def test_request_survives_its_stored_options():
    original = ComposeRequest("Tides", language="zh", target_words=400, images=2,
                              material="notes", image_license="CC0 1.0")
    assert ComposeRequest.from_options("Tides", original.options()) == original


def test_a_killed_worker_is_replaced_and_the_job_ends_with_each_paragraph_once(
        tmp_path, redis_url):
    reference = Services(Settings.from_env({}, home=tmp_path / "reference"),
                         lm=ArticleWriter())
    for _ in LocalJobs(reference).compose(request(), None, "ann"):
        pass
    expected = texts(reference, reference.documents.list()[0].id)
    assert len({section for section, _ in expected}) >= 2

    app = Services(settings_for(tmp_path, redis_url))
    first = start_worker(tmp_path, redis_url, "first")
    second = None
    try:
        job = app.jobs.submit(request(), None, "ann")
        stages = []
        for event in app.jobs.follow(job):
            stages.append(event.stage)
            if event.block is not None and first.poll() is None:
                first.kill()  # mid-composition: one paragraph saved, the rest not
                first.wait()
                second = start_worker(tmp_path, redis_url, "second")
        assert stages[-1] == "done" and second is not None
        assert texts(app, job) == expected  # every paragraph once, in order
        assert app.documents.get(job).status == "done"
        assert app.jobs.active("ann") == []
    finally:
        stop_all(first, *([second] if second else []))


def test_the_page_follows_a_queued_job_and_its_stop_reaches_the_worker(tmp_path, redis_url):
    app = Services(settings_for(tmp_path, redis_url))
    cancel = threading.Event()
    updates = write_article(app, request(), None, "bob", cancel, interval=0.0)
    first = next(updates)  # no worker yet: the page says it waits in line
    assert first.stage == "queued" and first.document_id
    worker = start_worker(tmp_path, redis_url, "worker")
    try:
        for update in updates:
            if update.words:
                cancel.set()  # the Stop button of the page that follows it
        assert update.finished and update.stage == "stopped"
        doc = app.documents.get(first.document_id)
        assert doc.status == "interrupted" and doc.text_blocks
    finally:
        stop_all(worker)


def test_the_line_says_where_each_job_stands_and_caps_each_owner(tmp_path, redis_url):
    app = Services(settings_for(tmp_path, redis_url, jobs_per_owner=2))
    first = app.jobs.submit(request("One"), None, "cat")
    second = app.jobs.submit(request("Two"), None, "cat")
    other = app.jobs.submit(request("Three"), None, "dan")
    assert [app.jobs.place(job)[0] for job in (first, second, other)] == [1, 2, 3]
    with pytest.raises(InputError, match="the limit is 2 .COMPOSER_JOBS_PER_OWNER."):
        app.jobs.submit(request("Four"), None, "cat")
    app.jobs.stop(first)
    waiting = next(app.jobs.follow(second))  # no worker yet: it says where it waits
    assert waiting.stage == "queued" and "Waiting" in waiting.message


def _shown_once(updates: list, doc) -> None:
    """Each view of the followed document shows the saved paragraphs in order, none twice."""
    import html
    import re

    saved = [block.text for block in doc.text_blocks]
    for update in updates:
        shown = [html.unescape(text) for text in re.findall(r"<p>(.*?)</p>", update.html)]
        assert shown == saved[:len(shown)]
    assert len(re.findall(r"<p>(.*?)</p>", updates[-1].html)) == len(saved)


def test_a_reopened_page_follows_a_queued_job_live_to_its_end(tmp_path, redis_url):
    app = Services(settings_for(tmp_path, redis_url))
    updates = write_article(app, request(), None, "eve", threading.Event(), interval=0.0)
    doc_id = next(updates).document_id
    updates.close()  # the tab that asked for it is closed: the job stays queued
    worker = start_worker(tmp_path, redis_url, "worker")
    try:
        reopened = Services(settings_for(tmp_path, redis_url))  # another app replica
        while not reopened.documents.get(doc_id).text_blocks:  # it has begun writing
            threading.Event().wait(0.1)
        with pytest.raises(Exception, match="no document"):
            next(follow_article(reopened, doc_id, "mallory", threading.Event()))
        seen = list(follow_article(reopened, doc_id, "eve", threading.Event(), interval=0.0))
        assert len(seen) > 2 and seen[-1].finished and seen[-1].stage == "done"
        growing = [update.words for update in seen if update.stage in ("write", "draft")]
        assert growing == sorted(growing) and growing[0] < growing[-1]  # it grew as it came
        doc = reopened.documents.get(doc_id)
        assert doc.status == "done"
        _shown_once(seen, doc)
        assert list(follow_article(reopened, doc_id, "eve", threading.Event())) == []
    finally:
        stop_all(worker)


def test_following_a_job_that_is_gone_ends(tmp_path, redis_url, monkeypatch):
    monkeypatch.setattr(queue, "POSITION_EVERY_SECONDS", 0.05)
    monkeypatch.setattr(queue, "READ_BLOCK_MS", 50)
    app = Services(settings_for(tmp_path, redis_url))
    events = list(app.jobs.follow("no-such-job"))
    assert events[-1].stage == "stopped" and "not being written" in events[-1].message


def test_another_page_follows_and_stops_a_composition_in_this_process(tmp_path):
    services = Services(Settings.from_env({}, home=tmp_path / "home", model=FACTORY))
    services.jobs.wait_seconds = 0.05
    writing = write_article(services, request(), None, "fay", threading.Event(), interval=0.0)
    doc_id = next(writing).document_id
    kept: list = []
    page = threading.Thread(target=lambda: kept.extend(writing), daemon=True)
    page.start()  # the first page goes on writing while a second page opens the document
    while not services.documents.get(doc_id).text_blocks:
        threading.Event().wait(0.02)
    stop = threading.Event()
    followed = []
    for update in follow_article(services, doc_id, "fay", stop, interval=0.0):
        followed.append(update)
        if len(services.documents.get(doc_id).text_blocks) >= 3:
            stop.set()  # the second page's Stop
    page.join(timeout=30)
    assert kept[-1].finished and kept[-1].stage == "stopped"  # the first page heard it too
    assert followed[-1].finished and followed[-1].stage == "stopped"
    doc = services.documents.get(doc_id)
    assert doc.status == "interrupted"
    _shown_once(followed, doc)
    assert not services.jobs.running(doc_id)
