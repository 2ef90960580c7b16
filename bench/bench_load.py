"""Load test: N people compose through gradio_client while M readers fetch share pages,
against app replicas that share PostgreSQL and Redis, with queue workers beside them.

Starts everything on loopback: a fresh PostgreSQL database (`bench_load` on
127.0.0.1:5432), a Redis database of its own, `--replicas` app.py processes and `--workers`
`python -m composer worker` processes. One shared article is prepared for the readers; wrk
(Debian's `wrk`) reads it on every replica with M/replicas connections while the composers
run, each through its own client and owner cookie, spread over the replicas. At the end every
composer's document is checked in the database: exactly one, its own instruction and owner,
status done, with text (nothing lost or mixed up).

    .venv/bin/python bench/bench_load.py [--composers 5] [--readers 50] [--replicas 2]
        [--workers 2] [--writer fast|embedded] [--words 300] [--share-fresh S [S ...]]
        [--rounds 1] [--out FILE]

`--writer fast` is the scripted article writer of the tests (tests/fakes.py, no model);
`embedded` is the default SmolLM2 model in each worker. `--share-fresh 0 1 --rounds 2` runs
the share-page cache with and without its freshness window, alternating, for a side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_share import free_port, parse_wrk, prepare  # noqa: E402

ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/bench_load"
REDIS_URL = "redis://127.0.0.1:6379/12"
WRITERS = {"fast": "tests.fakes:article_factory", "embedded": "embedded"}
NO_OUTLINE = {"headers": ["a", "b", "c"], "data": []}


def fresh_stores() -> None:
    """An empty `bench_load` database and an empty Redis database for this run."""
    import redis
    import sqlalchemy

    engine = sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql("DROP DATABASE IF EXISTS bench_load WITH (FORCE)")
        connection.exec_driver_sql("CREATE DATABASE bench_load")
    engine.dispose()
    redis.Redis.from_url(REDIS_URL).flushdb()


def wait_for(url: str, process: subprocess.Popen, what: str) -> None:
    for _ in range(240):
        if process.poll() is not None:
            sys.exit(f"{what} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"{what} did not start")


def read_wrk(output: str) -> dict:
    """parse_wrk's figures plus the request count and socket errors (connect, read, write,
    timeout)."""
    import re

    result = parse_wrk(output)
    result["requests"] = int(re.search(r"(\d+) requests in", output)[1])
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    result["socket_errors"] = sum(map(int, errors.groups())) if errors else 0
    return result


def owner_cookie(url: str) -> str:
    response = urllib.request.urlopen(url + "/")
    cookie = next(value for name, value in response.headers.items()
                  if name.lower() == "set-cookie" and value.startswith("xc_owner="))
    return cookie.split(";")[0]


def compose(url: str, number: int, words: int, results: list[dict]) -> None:
    """One person: a client with its own cookie writes one article through the app."""
    from gradio_client import Client

    instruction = f"Composer {number}: harbors and lighthouses of the north"
    started = time.monotonic()
    result = {"number": number, "instruction": instruction, "replica": url}
    try:
        cookie = owner_cookie(url)
        result["owner_cookie"] = cookie
        client = Client(url + "/", verbose=False, headers={"Cookie": cookie})
        options = ("en", words, "auto", True, number, False, 0.7, 0.8, 1.1, 1, 1024, "score",
                   "(any)", "(any)", 1, "default")
        html, status, *_ = client.predict(instruction, "", None, "", NO_OUTLINE, *options,
                                          api_name="/write")
        result.update(ok=status.startswith("✓"), status=status.split("·")[0].strip())
    except Exception as error:  # the table counts it; the message says what
        result.update(ok=False, error=f"{type(error).__name__}: {error}"[:300])
    result["seconds"] = round(time.monotonic() - started, 2)
    results.append(result)


def check_documents(home: Path, results: list[dict]) -> dict:
    """Each composer's document: exactly one, with its instruction, done and with text."""
    from composer.config import Settings
    from composer.services import Services

    services = Services(Settings.from_env({}, home=home, database_url=DATABASE_URL))
    rows = services.documents.list(limit=1000)
    docs = [services.documents.get(row.id) for row in rows]
    lost, mixed = 0, 0
    for result in results:
        mine = [doc for doc in docs if doc.instruction == result["instruction"]]
        if len(mine) != 1 or mine[0].status != "done" or not mine[0].text_blocks:
            lost += 1
        elif sum(1 for doc in docs if doc.owner == mine[0].owner) != 1:
            mixed += 1  # another composer's article under the same owner
    services.db.dispose()
    return {"documents_lost": lost, "documents_mixed_up": mixed}


def run_once(args: argparse.Namespace, share_fresh: float | None) -> dict:
    """One load run on fresh stores; `share_fresh` sets COMPOSER_SHARE_FRESH_SECONDS in the
    apps (None: the app's default). Returns the table."""
    fresh_stores()
    home = Path(tempfile.mkdtemp(prefix="bench-load-"))
    token = prepare(home, DATABASE_URL)
    env = {**os.environ, "COMPOSER_HOME": str(home), "DATABASE_URL": DATABASE_URL,
           "COMPOSER_REDIS_URL": REDIS_URL, "COMPOSER_MODEL": WRITERS[args.writer],
           "COMPOSER_JOBS_PER_OWNER": "2", "PYTHONPATH": str(ROOT)}
    if share_fresh is not None:
        env["COMPOSER_SHARE_FRESH_SECONDS"] = str(share_fresh)
    logs = home / "logs"
    logs.mkdir()
    processes, urls = [], []
    try:
        for number in range(args.replicas):
            port = free_port()
            urls.append(f"http://127.0.0.1:{port}")
            processes.append(subprocess.Popen(
                [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                stdout=open(logs / f"app{number}.log", "w"), stderr=subprocess.STDOUT))
        for number in range(args.workers):
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "composer", "worker"], cwd=ROOT, env=env,
                stdout=open(logs / f"worker{number}.log", "w"), stderr=subprocess.STDOUT))
        for url, process in zip(urls, processes):
            wait_for(f"{url}/a/{token}", process, f"app replica {url}")
        results: list[dict] = []
        composers = [threading.Thread(target=compose, args=(urls[n % len(urls)], n,
                                                            args.words, results))
                     for n in range(args.composers)]
        started = time.monotonic()
        for thread in composers:
            thread.start()
        readers = [subprocess.Popen(
            ["wrk", "-t1", f"-c{max(1, args.readers // len(urls))}", "-d3600s", "--latency",
             f"{url}/a/{token}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for url in urls]
        for thread in composers:
            thread.join()
        composing_seconds = time.monotonic() - started
        reads = []
        for reader in readers:  # wrk prints its summary when interrupted
            reader.send_signal(2)
            reads.append(read_wrk(reader.communicate(timeout=30)[0]))
        return {
            "composers": args.composers, "readers": args.readers, "replicas": args.replicas,
            "workers": args.workers, "writer": args.writer, "words": args.words,
            "cores": os.cpu_count(),
            "share_fresh_seconds": share_fresh if share_fresh is not None else "default",
            "compositions_finished": sum(1 for r in results if r.get("ok")),
            "composition_errors": sum(1 for r in results if not r.get("ok")),
            "composing_seconds": round(composing_seconds, 1),
            "composition_seconds_max": max((r["seconds"] for r in results), default=0),
            "share_requests": sum(r["requests"] for r in reads),
            "share_errors": sum(r["non_2xx"] + r["socket_errors"] for r in reads),
            "share_p50_ms_per_replica": [r["p50_ms"] for r in reads],
            "share_p99_ms_per_replica": [r["p99_ms"] for r in reads],
            "share_p99_ms_worst": max(r["p99_ms"] for r in reads),
            **check_documents(home, results),
            "results": sorted(results, key=lambda r: r["number"]),
        }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--composers", type=int, default=5)
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--writer", choices=sorted(WRITERS), default="fast")
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--share-fresh", type=float, nargs="+", default=[None],
                        help="COMPOSER_SHARE_FRESH_SECONDS of the apps; several values run "
                             "one arm each, alternating, --rounds times")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or ROOT / "bench" / "results" / f"load_{args.writer}.json"
    arms = [run_once(args, fresh) for _ in range(args.rounds) for fresh in args.share_fresh]
    result = arms[0] if len(arms) == 1 else {"arms": arms}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for arm in arms:
        print(json.dumps({k: v for k, v in arm.items() if k != "results"}))


if __name__ == "__main__":
    main()
