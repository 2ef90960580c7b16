"""Benchmark: throughput and latency of a public share page /a/{token} under load.

Builds a data dir with one shared, illustrated article (no model needed), starts app.py on
loopback, and drives it with wrk (Debian's `wrk`) at 64 connections, once with one wrk thread
and once with two (on a 2-core machine the second wrk thread competes with the server for
CPU, which shows in the tail). Reports requests/s and latency percentiles as JSON.

    .venv/bin/python bench/bench_share.py [--connections 64] [--seconds 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from composer.config import Settings  # noqa: E402
from composer.services import Services  # noqa: E402
from composer.types import ImageBlock, ImageCandidate, TextBlock  # noqa: E402

PARAGRAPH = ("Lighthouses guided ships past dangerous coasts for centuries, their lamps "
             "magnified by great glass lenses that threw a beam far out to sea. ") * 4


def prepare(home: Path, database_url: str | None = None) -> str:
    """A data dir (and database) holding one shared article of 12 paragraphs and 3 images;
    returns its token."""
    from composer.library import seed_default_library

    services = Services(Settings.from_env({}, home=home, database_url=database_url))
    seed_default_library(services.images)
    images = services.images.list()[:3]
    doc = services.documents.create("The history and science of lighthouses", "bench", "en", {})
    blocks: list = []
    for number in range(12):
        blocks.append(TextBlock(f"{number + 1}. {PARAGRAPH}", section=number // 3))
        if number % 4 == 1:
            image = images[len(blocks) % len(images)]
            blocks.append(ImageBlock(image.caption, image.id,
                                     [ImageCandidate(image.id, image.caption, 0.9)]))
    services.documents.append_blocks(doc.id, blocks)
    services.documents.update_meta(doc.id, status="done")
    token = services.shares.share(doc.id)
    services.db.dispose()
    return token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from `wrk --latency` output."""
    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    result = {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])}
    for percent in ("50", "90", "99"):
        result[f"p{percent}_ms"] = ms(re.search(rf"^\s+{percent}%\s+(\S+)", output, re.M)[1])
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(errors[1]) if errors else 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="wrk thread counts to run in turn (on 2 cores, 2 wrk threads "
                        "take the core the server would use)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "share.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    home = Path(tempfile.mkdtemp(prefix="bench-share-"))
    token = prepare(home)
    port = free_port()
    env = {**os.environ, "COMPOSER_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/a/{token}"
    try:
        for _ in range(120):
            try:
                page = urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            sys.exit(f"the app did not start: {server.stderr.read1().decode()[-2000:]}")
        runs = {}
        for threads in args.threads:
            run = subprocess.run(["wrk", f"-t{threads}", f"-c{args.connections}",
                                  f"-d{args.seconds}s", "--latency", url],
                                 capture_output=True, text=True, check=True)
            runs[f"wrk_threads_{threads}"] = parse_wrk(run.stdout)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {"url_path": "/a/{token}", "page_bytes": len(page), "connections": args.connections,
              "seconds": args.seconds, "cpus": os.cpu_count(), **runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
