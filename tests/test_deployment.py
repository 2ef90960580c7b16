"""The deployment files against the code. No Docker daemon or image registry is reachable
here, so the processes of compose.yaml run natively with the commands and environment it
gives them (hosts `postgres` and `redis` replaced by the local servers): the one-shot init,
an app replica (the Dockerfile's CMD, checked by its HEALTHCHECK) and a worker, which then
write an article together through the app's API."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from bench.bench_load import compose
from bench.bench_share import free_port
from composer.config import Settings
from composer.services import Services
from tests.support_storage import postgres_server  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/14"
FAST_WRITER = "tests.fakes:article_factory"


def stack() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_every_setting_the_deployment_files_name_is_one_the_app_reads():
    named = set()
    for path in ("compose.yaml", "Dockerfile", "docs/deployment.md"):
        named |= set(re.findall(r"\bCOMPOSER_[A-Z_]*[A-Z]\b", (ROOT / path).read_text()))
    config = (ROOT / "composer" / "config.py").read_text()
    assert named and not {name for name in named if f'"{name}"' not in config}


def _native(command: list[str]) -> list[str]:
    """A container command for this machine: `python` is the test's interpreter."""
    if command[:2] == ["sh", "-c"]:
        return ["sh", "-c", command[2].replace("python ", f"{shlex.quote(sys.executable)} ")]
    return [sys.executable if part == "python" else part for part in command]


def _environment(home: Path, database_url: str, port: int) -> dict[str, str]:
    """compose.yaml's environment for the app and the worker, pointed at local servers, and
    the Dockerfile's ENV lines."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("COMPOSER_") and key != "DATABASE_URL"}
    for match in re.finditer(r"^\s+([A-Z_]+)=(\S+?)\s*\\?$", dockerfile(), re.MULTILINE):
        env[match.group(1)] = match.group(2)
    composer = stack()["x-composer"]["environment"]
    assert set(composer) == {"COMPOSER_HOME", "DATABASE_URL", "COMPOSER_REDIS_URL"}
    env.update(COMPOSER_HOME=str(home), DATABASE_URL=database_url,
               COMPOSER_REDIS_URL=REDIS_URL, COMPOSER_PORT=str(port),
               COMPOSER_HOST="127.0.0.1", COMPOSER_MODEL=FAST_WRITER,
               HF_HOME=str(home / "huggingface"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(ROOT))
    return env


@pytest.mark.postgres
def test_init_app_and_worker_run_as_compose_yaml_starts_them(postgres_server, tmp_path):  # noqa: F811
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.RedisError:
        pytest.skip("no Redis answers at 127.0.0.1:6379")
    services_of = stack()["services"]
    home, port = tmp_path / "data", free_port()
    database_url = postgres_server.render_as_string(hide_password=False)
    env = _environment(home, database_url, port)

    init = subprocess.run(_native(services_of["init"]["command"]), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr[-2000:]
    assert (home / "browser-secret").stat().st_size > 0
    seeded = Services(Settings.from_env({}, home=home, database_url=database_url))
    assert seeded.images.count() > 0  # the default library, in the shared database
    seeded.db.dispose()

    app_command = re.search(r'^CMD (\[.*\])$', dockerfile(), re.MULTILINE).group(1)
    processes = [
        subprocess.Popen(_native(yaml.safe_load(app_command)), cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen(_native(services_of["worker"]["command"]), cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    ]
    try:
        health = re.search(r'CMD \["python", "-c", "(.*)"\]\s*$', dockerfile(),
                           re.MULTILINE).group(1)
        for _ in range(120):  # the image's HEALTHCHECK, as Docker runs it
            assert processes[0].poll() is None, processes[0].stdout.read()[-2000:]
            if subprocess.run([sys.executable, "-c", health], env=env,
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the app never passed the image's HEALTHCHECK")
        results: list[dict] = []
        compose(f"http://127.0.0.1:{port}", 0, 200, results)
        assert results[0]["ok"], results[0]
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200
        grace = int(services_of["worker"]["stop_grace_period"].rstrip("s"))
        for process in processes:  # docker compose stop: SIGTERM, then the grace period
            process.send_signal(signal.SIGTERM)
        for process in processes:
            assert process.wait(timeout=grace) is not None
        assert "job(s) at a time" in processes[1].stdout.read()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        redis.Redis.from_url(REDIS_URL).flushdb()
    written = Services(Settings.from_env({}, home=home, database_url=database_url))
    doc = written.documents.list(limit=5)
    assert len(doc) == 1 and doc[0].status == "done"
    written.db.dispose()
