"""Side by side: the app's embedded writer and llama.cpp (llama-cpp-python) on the same GGUF
(SmolLM2-135M-Instruct Q4_1), the same prompt token ids, greedy, at 1 and 2 threads.

Each measurement is a fresh process (so load time and peak memory are what a user sees), the
arms alternate within every round, and the ratio app/llama.cpp is reported per round with its
spread. Reported per arm and thread count: cached load seconds (after imports), time to first
token, prefill tokens/s (prompt tokens / time to first token), decode tokens/s (greedy,
EOS ignored so both decode the same count), peak RSS; and whether both decoded the same
text (their numerics differ: the app dequantizes int4 groups to bf16/fp32 matmuls,
llama.cpp uses its own quantized dot products, so a late divergence is expected).

llama-cpp-python compiles llama.cpp for several minutes; build it once in a venv of its own:

    python3.11 -m venv /work/llama-venv && /work/llama-venv/bin/pip install llama-cpp-python
    .venv/bin/python bench/bench_llamacpp.py --llama-python /work/llama-venv/bin/python \
        [--rounds 3] [--tokens 128] [--threads 1 2] [--repack] [--out FILE]

llama.cpp's extra buffer types (weight repacking) are off unless --repack: on an Intel Xeon
with AMX they crashed in llama_decode.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_llama_server import WITHOUT_REPACK  # noqa: E402
from bench.bench_model import PROMPT, peak_rss_mb  # noqa: E402
from bench.bench_plora_target import processor  # noqa: E402
from models.embedded import embedded_gguf_path  # noqa: E402

# Runs in llama-cpp-python's interpreter (after WITHOUT_REPACK unless --repack):
# argv = gguf, ids file, threads, tokens.
LLAMA_PHASE = r"""
import json, resource, sys, time
import numpy as np
import llama_cpp
gguf, ids_file, threads, tokens = sys.argv[1:5]
ids = json.load(open(ids_file))
imported = time.perf_counter()
llm = llama_cpp.Llama(model_path=gguf, n_threads=int(threads), n_threads_batch=int(threads),
                      n_ctx=2048, n_batch=512, verbose=False)
loaded = time.perf_counter()
n_vocab = llm.n_vocab()
def greedy():  # the last position's logits, straight from llama.cpp's context
    row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    return int(np.argmax(row))
def run():
    llm.reset()
    begin = time.perf_counter()
    llm.eval(ids)
    out = [greedy()]
    first = time.perf_counter()
    for _ in range(int(tokens) - 1):
        llm.eval([out[-1]])
        out.append(greedy())
    return begin, first, time.perf_counter(), out
run()  # warm-up
begin, first, ended, out = run()
text = llm.detokenize(out).decode("utf-8", errors="replace")
print(json.dumps({"load_s": loaded - imported, "first_token_s": first - begin,
                  "decode_tok_s": (int(tokens) - 1) / (ended - first), "text": text,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def phase_app(home: str, threads: int, tokens: int, ids_out: str) -> dict:
    """The app's writer (cached load) in this process: greedy decode of `tokens` tokens."""
    import torch  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401

    from composer.types import ChatMessage, GenerationConfig
    from models.registry import load_language_model

    from composer.config import Settings

    settings = Settings.from_env({"COMPOSER_HOME": home, "COMPOSER_THREADS": str(threads)},
                                 device="cpu")
    started = time.perf_counter()
    lm = load_language_model(settings)
    load_s = time.perf_counter() - started
    lm.eos_ids = []
    messages = [ChatMessage("user", PROMPT)]
    config = GenerationConfig(max_new_tokens=tokens, repetition_penalty=1.0)
    ids = lm.prompt_ids(messages, tokens)
    Path(ids_out).write_text(json.dumps(ids))
    "".join(lm.stream(messages, config.replace(max_new_tokens=16)))  # warm-up
    began = time.perf_counter()
    pieces = lm.stream(messages, config)
    text = [next(pieces)]
    first = time.perf_counter()
    text.extend(pieces)
    ended = time.perf_counter()
    return {"load_s": load_s, "first_token_s": first - began,
            "decode_tok_s": (tokens - 1) / (ended - first), "text": "".join(text),
            "prompt_tokens": len(ids), "peak_rss_mb": peak_rss_mb()}


def run_app(home: str, threads: int, tokens: int, ids_file: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--phase", "app", "--home", home,
                           "--threads", str(threads), "--tokens", str(tokens),
                           "--ids-file", ids_file], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1",
                               "TOKENIZERS_PARALLELISM": "false"})
    if done.returncode:
        sys.exit(f"the app's phase failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_llama(python: str, threads: int, tokens: int, ids_file: str, repack: bool) -> dict:
    code = LLAMA_PHASE if repack else WITHOUT_REPACK + LLAMA_PHASE
    done = subprocess.run([python, "-c", code, str(embedded_gguf_path()), ids_file, str(threads),
                           str(tokens)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode:
        sys.exit(f"llama.cpp's phase failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-python", default=os.environ.get("LLAMA_PYTHON", ""))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repack", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                        "llamacpp.json")
    parser.add_argument("--phase", choices=["app"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "app":
        print(json.dumps(phase_app(args.home, args.threads[0], args.tokens, args.ids_file)))
        return
    if not args.llama_python:
        sys.exit("--llama-python (or LLAMA_PYTHON) must name the Python that has "
                 "llama-cpp-python; see this file's docstring to build it")
    home = tempfile.mkdtemp(prefix="bench-llamacpp-")
    ids_file = str(Path(home) / "prompt_ids.json")
    run_app(home, 1, 4, ids_file)  # converts the GGUF once: later loads are cached
    record: dict = {"tokens": args.tokens, "rounds": args.rounds, "repack": args.repack,
                    "cpus": os.cpu_count(), "machine": platform.machine(),
                    "processor": processor(), "by_threads": {}}
    for threads in args.threads:
        rounds = []
        for number in range(args.rounds):
            arms = ("app", "llama.cpp") if number % 2 == 0 else ("llama.cpp", "app")
            measured = {}
            for arm in arms:
                measured[arm] = run_app(home, threads, args.tokens, ids_file) if arm == "app" \
                    else run_llama(args.llama_python, threads, args.tokens, ids_file,
                                   args.repack)
            prompt_tokens = measured["app"]["prompt_tokens"]
            for arm in measured.values():
                arm["prefill_tok_s"] = prompt_tokens / arm["first_token_s"]
            app_text = measured["app"].pop("text")
            llama_text = measured["llama.cpp"].pop("text")
            same = next((i for i, (a, b) in enumerate(zip(app_text, llama_text)) if a != b),
                        min(len(app_text), len(llama_text)))
            rounds.append({**measured, "same_characters_before_divergence": same,
                           "characters": len(app_text), "app_text": app_text[:160],
                           "llama_text": llama_text[:160],
                           "decode_ratio": measured["app"]["decode_tok_s"]
                           / measured["llama.cpp"]["decode_tok_s"],
                           "prefill_ratio": measured["app"]["prefill_tok_s"]
                           / measured["llama.cpp"]["prefill_tok_s"]})
            print(json.dumps({"threads": threads, "round": number, **rounds[-1]}), flush=True)
        record["by_threads"][str(threads)] = {"rounds": rounds, "summary": _summary(rounds)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({t: v["summary"] for t, v in record["by_threads"].items()}, indent=2))


def _summary(rounds: list[dict]) -> dict:
    """Medians per arm, and the ratios' median, min and max over the rounds."""
    summary: dict = {}
    for arm in ("app", "llama.cpp"):
        summary[arm] = {key: round(statistics.median(r[arm][key] for r in rounds), 3)
                        for key in ("load_s", "first_token_s", "prefill_tok_s",
                                    "decode_tok_s", "peak_rss_mb")}
    for ratio in ("decode_ratio", "prefill_ratio"):
        values = [r[ratio] for r in rounds]
        summary[ratio] = {"median": round(statistics.median(values), 3),
                          "min": round(min(values), 3), "max": round(max(values), 3)}
    return summary


if __name__ == "__main__":
    main()
