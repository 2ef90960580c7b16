"""Compose through llama.cpp's own OpenAI-compatible server serving the embedded GGUF: the
remote writer (COMPOSER_WRITER_URL) end to end against a real model server, side by side with
the embedded in-process writer on the same weights.

Opt-in, because the server compiles llama.cpp for several minutes. Build it once in a venv
of its own (it must not change the app's packages):

    python3.11 -m venv /work/llama-venv
    /work/llama-venv/bin/pip install "llama-cpp-python[server]"
    .venv/bin/python bench/bench_llama_server.py --llama-python /work/llama-venv/bin/python \
        [--rounds 2] [--words 300] [--threads 1] [--arms server embedded] [--out FILE]

The server runs with llama.cpp's extra buffer types (weight repacking) off by default
(`--repack` turns them on): on an Intel Xeon with AMX the repack path crashed in decode.
Each arm composes the same titles through `python -m composer compose --text-only`, arms
alternating per round; for each article it reports seconds to the first article text on
stdout, total seconds, words and sections saved, and the exit code. JSON out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_share import free_port  # noqa: E402
from models.embedded import embedded_gguf_path  # noqa: E402

TITLES = ["The history of lighthouses", "How bees make honey"]

# Python source that turns llama.cpp's extra buffer types (weight repacking) off for every model
# loaded after it: llama-cpp-python's Llama does not expose use_extra_bufts, so this wraps the
# function that makes the model's default parameters.
WITHOUT_REPACK = """
import llama_cpp.llama_cpp as _C
_default_params = _C.llama_model_default_params
def _without_repack():
    params = _default_params()
    params.use_extra_bufts = False
    return params
_C.llama_model_default_params = _without_repack
"""
# Runs llama_cpp.server with repacking off.
LAUNCHER = WITHOUT_REPACK + """
import runpy, sys
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


def start_server(python: str, port: int, threads: int, repack: bool, log: Path
                 ) -> subprocess.Popen:
    """llama_cpp.server on loopback serving the embedded GGUF as "smollm2"; waits for it."""
    args = ["--model", str(embedded_gguf_path()), "--model_alias", "smollm2", "--port", str(port),
            "--n_threads", str(threads), "--n_ctx", "4096"]
    command = [python, "-m", "llama_cpp.server", *args] if repack else \
        [python, "-c", LAUNCHER, *args]
    process = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    for _ in range(240):
        if process.poll() is not None:
            sys.exit(f"llama_cpp.server exited with {process.returncode}: see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    sys.exit(f"llama_cpp.server did not answer on port {port}: see {log}")


def compose(title: str, words: int, env: dict[str, str]) -> dict:
    """One CLI composition; times the first line of article text on stdout."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "composer", "compose", title, "--words", str(words),
         "--text-only"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    first_text, lines = None, []
    for line in process.stdout:
        if first_text is None and line.strip() and not line.startswith("Saved document"):
            first_text = time.monotonic() - started
        lines.append(line)
    stderr = process.stderr.read()
    code = process.wait()
    output = "".join(lines)
    saved = re.search(r"Saved document (\w+) \((\w+), (\d+) words", output)
    return {
        "title": title, "exit_code": code,
        "seconds_to_first_text": round(first_text, 2) if first_text is not None else None,
        "seconds": round(time.monotonic() - started, 2),
        "status": saved.group(2) if saved else None,
        "words": int(saved.group(3)) if saved else 0,
        "paragraphs": len([p for p in output.split("Saved document")[0].split("\n\n")
                           if p.strip()]),
        "error": stderr.strip().splitlines()[-1][:300] if code else None,
        "article": output.split("Saved document")[0].strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-python", default=os.environ.get("LLAMA_PYTHON", ""),
                        help="the Python that has llama-cpp-python[server] (LLAMA_PYTHON)")
    parser.add_argument("--arms", nargs="+", choices=["server", "embedded"],
                        default=["server", "embedded"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repack", action="store_true",
                        help="leave llama.cpp's extra buffer types (weight repacking) on")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                        "llama_server.json")
    args = parser.parse_args()
    if "server" in args.arms and not args.llama_python:
        sys.exit("--llama-python (or LLAMA_PYTHON) must name the Python that has "
                 "llama-cpp-python[server]; see this file's docstring to build it")
    home = Path(tempfile.mkdtemp(prefix="bench-llama-"))
    port = free_port()
    server = None
    if "server" in args.arms:
        server = start_server(args.llama_python, port, args.threads, args.repack,
                              home / "server.log")
    base = {**os.environ, "COMPOSER_HOME": str(home), "COMPOSER_THREADS": str(args.threads),
            "PYTHONPATH": str(ROOT)}
    for name in ("DATABASE_URL", "COMPOSER_REDIS_URL", "COMPOSER_WRITER_URL", "COMPOSER_MODEL"):
        base.pop(name, None)
    envs = {"server": {**base, "COMPOSER_WRITER_URL": f"http://127.0.0.1:{port}/v1",
                       "COMPOSER_WRITER_CONTEXT": "4096"},
            "embedded": base}
    runs = []
    try:
        for round_number in range(args.rounds):
            for arm in args.arms:
                for title in TITLES:
                    run = compose(title, args.words, envs[arm])
                    runs.append({"arm": arm, "round": round_number, **run})
                    print(json.dumps({k: v for k, v in runs[-1].items() if k != "article"}),
                          flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    def summary(arm: str) -> dict:
        mine = [r for r in runs if r["arm"] == arm]
        done = [r for r in mine if r["status"] == "done"]
        return {"articles": len(mine), "done": len(done),
                "seconds_median": sorted(r["seconds"] for r in mine)[len(mine) // 2],
                "first_text_median": sorted(r["seconds_to_first_text"] or 0
                                            for r in mine)[len(mine) // 2],
                "words_total": sum(r["words"] for r in mine)}

    result = {"threads": args.threads, "words": args.words, "repack": args.repack,
              "cores": os.cpu_count(), "summary": {arm: summary(arm) for arm in args.arms},
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
