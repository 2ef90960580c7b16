"""`python -m composer worker`: runs queued compositions (composer/queue.py) on this machine.

A worker needs the database and Redis the app uses (DATABASE_URL, COMPOSER_REDIS_URL, and
COMPOSER_HOME on shared storage for the image files) and loads the writer once for all its
jobs. Each job holds a lease in Redis while it runs (renewed every second), watches its Stop
flag, and publishes its progress events. A job whose lease another live worker holds is a
second delivery of a job still running: it is looked at again later instead of run twice.
On SIGTERM/Ctrl-C the running jobs stop at once and go back to the queue, so another worker
goes on after their last saved paragraph.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

from composer import queue
from composer.jobs import event_to_json
from composer.types import ComposeRequest, ComposerError, NotFoundError, ProgressEvent

RENEW_SECONDS = 1.0
DURATIONS_KEPT = 50
log = logging.getLogger("composer.worker")


class _Worker:
    """What this process's jobs share: its services, Redis, broker and shutdown flag."""

    def __init__(self, services: Any, broker: Any) -> None:
        self.services = services
        self.broker = broker
        self.redis = queue.connect(services.settings.redis_url)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.shutting_down = threading.Event()
        # A lease outlives a dead worker by about as long as its heartbeat does.
        self.lease_seconds = max(3, round(services.settings.worker_heartbeat))


_current: _Worker | None = None


def run_job(job_id: str) -> None:
    """Run (or go on with) the composition of document `job_id` under a lease."""
    if _current is None:
        raise RuntimeError("run_job runs inside `python -m composer worker` only")
    worker, redis = _current, _current.redis
    if not redis.set(queue.lease_key(job_id), worker.name, nx=True, ex=worker.lease_seconds):
        # Another live worker runs it: look again later, in case that one dies.
        worker.broker.get_actor(queue.ACTOR_NAME).send_with_options(
            args=(job_id,), delay=worker.lease_seconds * 1500)
        return
    cancel = threading.Event()
    keeper = threading.Thread(target=_keep_lease, args=(worker, job_id, cancel), daemon=True)
    started = time.time()
    finished = True
    try:
        keeper.start()
        finished = _compose(worker, job_id, cancel)
    finally:
        cancel.set()  # also ends the keeper
        keeper.join()
        pipe = redis.pipeline()
        pipe.zrem(queue.RUNNING_KEY, job_id)
        if finished:
            pipe.lpush(queue.DURATIONS_KEY, time.time() - started)
            pipe.ltrim(queue.DURATIONS_KEY, 0, DURATIONS_KEPT - 1)
        pipe.execute()
        if redis.get(queue.lease_key(job_id)) == worker.name:
            redis.delete(queue.lease_key(job_id))
    if not finished:  # shutting down: another worker goes on with it
        redis.zadd(queue.WAITING_KEY, {job_id: started}, nx=True)
        worker.broker.get_actor(queue.ACTOR_NAME).send(job_id)


def _compose(worker: _Worker, job_id: str, cancel: threading.Event) -> bool:
    """Write the job's document, publishing its events; False when the worker stopped it to
    shut down (the job is to be run again)."""
    redis = worker.redis
    publish = _publisher(redis, job_id)
    redis.zrem(queue.WAITING_KEY, job_id)
    try:
        doc = worker.services.documents.get(job_id)
    except NotFoundError:
        return True  # deleted while it waited
    if doc.status in ("done", "failed"):
        return True  # a second delivery of a finished job
    redis.zadd(queue.RUNNING_KEY, {job_id: time.time()})
    if redis.exists(queue.stop_key(job_id)) and not doc.blocks:
        worker.services.documents.update_meta(job_id, status="interrupted")
        publish(ProgressEvent("stopped", "Stopped before it started", document_id=job_id))
        return True
    request = ComposeRequest.from_options(doc.instruction, doc.options)
    composer = worker.services.composer(with_images=not request.text_only)
    events = composer.compose(request, cancel=cancel, owner=doc.owner, document_id=job_id)
    try:
        for event in events:
            if event.stage == "stopped" and worker.shutting_down.is_set():
                worker.services.documents.update_meta(job_id, status="composing")
                publish(ProgressEvent("queued", "The worker stopped; the article waits for "
                                      "another one", document_id=job_id))
                return False
            publish(event)
    except ComposerError as error:
        publish(ProgressEvent("error", str(error), document_id=job_id))
    except Exception as error:  # the person must hear of it, then the log
        log.exception("job %s failed", job_id)
        publish(ProgressEvent("error", f"the worker failed ({type(error).__name__}: {error}); "
                              "what was written is saved", document_id=job_id))
    finally:
        events.close()
    return True


def _publisher(redis: Any, job_id: str):
    key = queue.events_key(job_id)

    def publish(event: ProgressEvent) -> None:
        redis.xadd(key, {"event": event_to_json(event)})
        redis.expire(key, queue.EVENTS_KEPT_SECONDS)
    return publish


def _keep_lease(worker: _Worker, job_id: str, cancel: threading.Event) -> None:
    """Renew the job's lease and turn its Stop flag (or a shutdown) into `cancel`."""
    while not cancel.wait(RENEW_SECONDS):
        try:
            worker.redis.expire(queue.lease_key(job_id), worker.lease_seconds)
            if worker.shutting_down.is_set() or worker.redis.exists(queue.stop_key(job_id)):
                cancel.set()
        except Exception:  # Redis away for a moment: try again
            log.warning("could not renew the lease of job %s", job_id, exc_info=True)


def serve(services: Any, threads: int) -> int:
    """Run jobs until SIGTERM/SIGINT; the running ones go back to the queue."""
    global _current
    from dramatiq import Worker

    settings = services.settings
    if not settings.redis_url:
        raise ComposerError("the worker needs COMPOSER_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
                            ", the Redis the app queues compositions on")
    broker = queue.make_broker(settings.redis_url, settings.worker_heartbeat)
    _current = _Worker(services, broker)
    _ = services.lm, services.embedder  # load the writer and the checks' embedder first
    _current.redis.incrby(f"{queue.PREFIX}:slots", threads)
    worker = Worker(broker, queues={queue.QUEUE_NAME, f"{queue.QUEUE_NAME}.DQ"},
                    worker_threads=threads)
    worker.queue_prefetch = threads  # take only what it can run now
    worker.delay_prefetch = threads
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    worker.start()
    print(f"worker {_current.name}: {threads} job(s) at a time on {settings.redis_url}",
          flush=True)
    try:
        stopping.wait()
    finally:
        _current.shutting_down.set()
        worker.stop(timeout=30_000)
        _current.redis.decrby(f"{queue.PREFIX}:slots", threads)
        broker.close()
    return 0
