"""Compositions as durable jobs on Dramatiq's Redis queue (COMPOSER_REDIS_URL).

Why Dramatiq: its Redis broker acknowledges a message only when the job returns, and moves
the messages of a worker that stopped sending heartbeats back to the queue, so a killed
worker's job is picked up by another; its workers are threads of one process, so a model
loaded once serves every job (RQ forks a process per job; Celery's Redis transport redelivers
only after an hour-long visibility timeout).

What lives where:
  the document (PostgreSQL/SQLite)   the request, the outline and every saved paragraph: a
                                      job is its document id, and a resumed job goes on after
                                      the last saved paragraph (Composer.compose document_id);
  Redis, under "composer:"           the job's progress events (a stream the app reads from
                                      the start, so a reopened page catches up), its Stop
                                      flag, its lease (which worker runs it), the line of
                                      waiting jobs and each owner's active jobs;
  Redis, under "dramatiq:"           Dramatiq's queue of messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from composer.jobs import TERMINAL_STAGES, event_from_json, event_to_json
from composer.types import ComposeRequest, ComposerError, InputError, Outline, ProgressEvent
from composer.validation import check_request

QUEUE_NAME = "compositions"
ACTOR_NAME = "compose"
PREFIX = "composer"
EVENTS_KEPT_SECONDS = 24 * 3600
STOP_KEPT_SECONDS = 24 * 3600
READ_BLOCK_MS = 500
POSITION_EVERY_SECONDS = 2.0
JOB_TIME_LIMIT_MS = 24 * 3600 * 1000
GONE_CHECKS = 3  # silent checks, POSITION_EVERY_SECONDS apart, before a job counts as gone


def events_key(job_id: str) -> str:
    return f"{PREFIX}:events:{job_id}"


def stop_key(job_id: str) -> str:
    return f"{PREFIX}:stop:{job_id}"


def lease_key(job_id: str) -> str:
    return f"{PREFIX}:lease:{job_id}"


def owner_key(owner: str | None) -> str:
    return f"{PREFIX}:owner:{owner or ''}"


WAITING_KEY = f"{PREFIX}:waiting"
RUNNING_KEY = f"{PREFIX}:running"
DURATIONS_KEY = f"{PREFIX}:durations"


def connect(redis_url: str) -> Any:
    """A Redis client for `redis_url`; ComposerError saying what to do when none answers."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10,
                                  health_check_interval=30)
    try:
        client.ping()
    except redis.RedisError as error:
        raise ComposerError(f"Redis at {redis_url} does not answer ({error}): start it, or "
                            "unset COMPOSER_REDIS_URL to compose in the app process") from error
    return client


def make_broker(redis_url: str, heartbeat_seconds: float) -> Any:
    """Dramatiq's Redis broker with the compose actor declared on it (app and worker alike).

    A worker silent for `heartbeat_seconds` is dead: its job goes back to the queue."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=redis_url, heartbeat_timeout=int(heartbeat_seconds * 1000),
                         maintenance_chance=100_000)
    dramatiq.actor(_run_job, broker=broker, actor_name=ACTOR_NAME, queue_name=QUEUE_NAME,
                   max_retries=0, time_limit=JOB_TIME_LIMIT_MS)
    return broker


def _run_job(job_id: str) -> None:
    """The actor: runs in a worker process (composer/worker.py sets who runs it)."""
    from composer import worker

    worker.run_job(job_id)


class QueuedJobs:
    """The app's side of queued compositions: enqueue, follow, stop, place in line."""

    durable = True

    def __init__(self, services: Any) -> None:
        settings = services.settings
        self.services = services
        self.redis = connect(settings.redis_url)
        self.broker = make_broker(settings.redis_url, settings.worker_heartbeat)
        self.per_owner = settings.jobs_per_owner

    def compose(self, request: ComposeRequest, outline: Outline | None, owner: str | None,
                cancel: threading.Event | None = None) -> Iterator[ProgressEvent]:
        """Queue a composition and follow it; the job goes on if the follower goes away."""
        request = check_request(request)
        self.services.check_language(request.language)
        job_id = self.submit(request, outline, owner)
        yield from self.follow(job_id, cancel)

    def submit(self, request: ComposeRequest, outline: Outline | None,
               owner: str | None) -> str:
        """Create the document and queue its job; InputError when the owner has too many."""
        active = self.active(owner)
        if len(active) >= self.per_owner:
            raise InputError(f"you have {len(active)} compositions waiting or being written; "
                             f"the limit is {self.per_owner} (COMPOSER_JOBS_PER_OWNER): wait "
                             "for one to finish or stop it")
        title = outline.title if outline else request.instruction.strip()[:120]
        doc = self.services.documents.create(title, request.instruction, request.language,
                                             request.options(), outline, owner)
        pipe = self.redis.pipeline()
        pipe.zadd(WAITING_KEY, {doc.id: time.time()})
        pipe.sadd(owner_key(owner), doc.id)
        pipe.xadd(events_key(doc.id), {"event": event_to_json(ProgressEvent(
            "queued", "Waiting for a writer", document_id=doc.id))})
        pipe.expire(events_key(doc.id), EVENTS_KEPT_SECONDS)
        pipe.execute()
        self.broker.get_actor(ACTOR_NAME).send(doc.id)
        return doc.id

    def active(self, owner: str | None) -> list[str]:
        """The owner's jobs still waiting or running (finished ones are forgotten here)."""
        jobs = sorted(self.redis.smembers(owner_key(owner)))
        live = [job for job in jobs if self._live(job)]
        gone = set(jobs) - set(live)
        if gone:
            self.redis.srem(owner_key(owner), *gone)
        return live

    def _live(self, job_id: str) -> bool:
        return (self.redis.zscore(WAITING_KEY, job_id) is not None
                or self.redis.zscore(RUNNING_KEY, job_id) is not None)

    def stop(self, job_id: str) -> None:
        """Ask whichever worker runs (or will run) the job to stop it; what is written stays."""
        self.redis.set(stop_key(job_id), "1", ex=STOP_KEPT_SECONDS)

    def place(self, job_id: str) -> tuple[int, float | None] | None:
        """(jobs ahead in line + 1, estimated seconds until it starts) while it waits, None
        once it runs. The estimate is the recent mean job time per worker slot."""
        rank = self.redis.zrank(WAITING_KEY, job_id)
        if rank is None:
            return None
        running = self.redis.zcard(RUNNING_KEY)
        durations = [float(value) for value in self.redis.lrange(DURATIONS_KEY, 0, 19)]
        workers = max(1, int(self.redis.get(f"{PREFIX}:slots") or 1))
        if not durations:
            return rank + 1, None
        mean = sum(durations) / len(durations)
        return rank + 1, mean * (rank + running) / workers

    def running(self, job_id: str) -> bool:
        """Whether the job waits for a worker or is being written."""
        return self._live(job_id)

    def watch(self, job_id: str, cancel: threading.Event | None = None
              ) -> Iterator[ProgressEvent]:
        """The job's events from now on (a page that opens the document has read what is
        saved so far; an event it already shows may come again, with the same block id)."""
        last = self.redis.xrevrange(events_key(job_id), count=1)
        yield from self.follow(job_id, cancel, after=last[0][0] if last else "0")

    def follow(self, job_id: str, cancel: threading.Event | None = None,
               after: str = "0") -> Iterator[ProgressEvent]:
        """The job's events from `after` ("0": from its start) until it is done or stopped;
        a failed job raises ComposerError with its message. Setting `cancel` stops the job."""
        stopping, shown_at, gone = False, 0.0, 0
        while True:
            if cancel is not None and cancel.is_set() and not stopping:
                self.stop(job_id)
                stopping = True
            reply = self.redis.xread({events_key(job_id): after}, block=READ_BLOCK_MS, count=100)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    after = entry_id
                    event = event_from_json(fields["event"])
                    if event.stage == "error":
                        raise ComposerError(event.message)
                    yield event
                    if event.stage in TERMINAL_STAGES:
                        return
            now = time.monotonic()
            if not reply and now - shown_at >= POSITION_EVERY_SECONDS:
                shown_at = now
                place = self.place(job_id)
                if place is not None:
                    yield ProgressEvent("queued", waiting_message(*place), document_id=job_id,
                                        position=place[0], wait_seconds=place[1])
                # neither waiting nor running, and silent: its document was deleted, or
                # Redis lost the job; a page must not wait for it forever
                gone = 0 if self._live(job_id) else gone + 1
                if gone >= GONE_CHECKS:
                    yield ProgressEvent("stopped", "It is not being written now",
                                        document_id=job_id)
                    return


def waiting_message(position: int, seconds: float | None) -> str:
    """'Waiting: 2nd in line, about 3 min' for the progress line."""
    ordinal = {1: "1st", 2: "2nd", 3: "3rd"}.get(position, f"{position}th")
    if seconds is None:
        return f"Waiting: {ordinal} in line"
    minutes = max(1, round(seconds / 60))
    return f"Waiting: {ordinal} in line, about {minutes} min"
