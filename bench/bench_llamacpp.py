"""Side by side: the app's writer and llama.cpp (llama-cpp-python) on the embedded GGUF
(SmolLM2-135M-Instruct), the same prompt token ids, greedy, at 1 and 2 threads.

Arms, each measured in a fresh process (so load time and peak memory are what a user sees),
their order rotating every round:
  app             the writer as the app loads it by default (models/llamacpp.py: llama.cpp
                  on the Q8_0 re-quantization of the shipped file, through LlamaCppLM.stream);
  llama.cpp       llama-cpp-python's Llama on the shipped Q4_1 file (the baseline);
  llama.cpp-q8_0  the same on the app's Q8_0 file (same engine, same weights as the app);
  torch           (--torch) the app's writer with COMPOSER_ENGINE=torch (int4), for history.
Reported per arm: cached load seconds (after imports), time to first token, prefill
tokens/s, decode tokens/s (EOS ignored so all decode the same count), peak RSS; per round
the ratios app / llama.cpp and app / llama.cpp-q8_0, with median, min and max. Quality of
the weights against float32: bench/bench_engine_quality.py.

    .venv/bin/python bench/bench_llamacpp.py [--rounds 3] [--tokens 128] [--threads 1 2]
        [--torch] [--repack] [--llama-python P] [--out FILE]

llama-cpp-python is the one scripts/setup.sh builds into .venv (--llama-python names
another). Repacking (llama.cpp's extra buffer types) is off in every arm unless --repack
(the raw arms only): it crashed in llama_decode on an Intel Xeon with AMX.
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


def phase_app(home: str, threads: int, tokens: int, ids_out: str, engine: str) -> dict:
    """The app's writer (cached load) in this process: greedy decode of `tokens` tokens."""
    from composer.config import Settings
    from composer.types import ChatMessage, GenerationConfig
    from models.registry import load_language_model

    if engine == "torch":  # its imports are not part of its load time
        import torch  # noqa: F401
        from transformers import LlamaForCausalLM  # noqa: F401
    settings = Settings.from_env({"COMPOSER_HOME": home, "COMPOSER_THREADS": str(threads),
                                  "COMPOSER_ENGINE": engine}, device="cpu")
    started = time.perf_counter()
    lm = load_language_model(settings)
    load_s = time.perf_counter() - started
    if engine == "torch":
        lm.eos_ids = []
    else:
        lm.vocab.is_end = lambda token_id: False
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
            "prompt_tokens": len(ids), "peak_rss_mb": peak_rss_mb(),
            "model": getattr(lm, "source", "")}


def run_app(home: str, threads: int, tokens: int, ids_file: str, engine: str = "auto"
            ) -> dict:
    done = subprocess.run([sys.executable, __file__, "--phase", "app", "--home", home,
                           "--threads", str(threads), "--tokens", str(tokens),
                           "--ids-file", ids_file, "--engine", engine],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1",
                               "TOKENIZERS_PARALLELISM": "false"})
    if done.returncode:
        sys.exit(f"the app's phase failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_llama(python: str, gguf: str, threads: int, tokens: int, ids_file: str,
              repack: bool) -> dict:
    code = LLAMA_PHASE if repack else WITHOUT_REPACK + LLAMA_PHASE
    done = subprocess.run([python, "-c", code, gguf, ids_file, str(threads), str(tokens)],
                          capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode:
        sys.exit(f"llama.cpp's phase failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-python", default=os.environ.get("LLAMA_PYTHON",
                                                                 sys.executable))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--torch", action="store_true", help="also the torch engine")
    parser.add_argument("--repack", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                        "llamacpp.json")
    parser.add_argument("--phase", choices=["app"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "app":
        print(json.dumps(phase_app(args.home, args.threads[0], args.tokens, args.ids_file,
                                   args.engine)))
        return
    from bench.bench_plora_target import processor  # imports torch: not in the app's phase

    home = tempfile.mkdtemp(prefix="bench-llamacpp-")
    ids_file = str(Path(home) / "prompt_ids.json")
    app_model = run_app(home, 1, 4, ids_file)["model"]  # re-quantizes once: later loads cached
    if args.torch:
        run_app(home, 1, 4, ids_file, "torch")  # converts once
    arms = ["app", "llama.cpp", "llama.cpp-q8_0"] + (["torch"] if args.torch else [])
    record: dict = {"tokens": args.tokens, "rounds": args.rounds, "repack": args.repack,
                    "arms": arms, "app_model": Path(app_model).name, "cpus": os.cpu_count(),
                    "machine": platform.machine(), "processor": processor(),
                    "by_threads": {}}
    for threads in args.threads:
        rounds = []
        for number in range(args.rounds):
            order = arms[number % len(arms):] + arms[:number % len(arms)]
            measured = {}
            for arm in order:
                if arm in ("app", "torch"):
                    measured[arm] = run_app(home, threads, args.tokens, ids_file,
                                            "auto" if arm == "app" else "torch")
                else:
                    gguf = str(embedded_gguf_path()) if arm == "llama.cpp" else app_model
                    measured[arm] = run_llama(args.llama_python, gguf, threads, args.tokens,
                                              ids_file, args.repack)
            prompt_tokens = measured["app"]["prompt_tokens"]
            texts = {}
            for arm, values in measured.items():
                values["prefill_tok_s"] = prompt_tokens / values["first_token_s"]
                texts[arm] = values.pop("text")
                values.pop("model", None)
            app_text = texts["app"]
            result = {**measured, "order": order, "app_text": app_text[:160]}
            for arm in arms[1:]:
                same = next((i for i, (a, b) in enumerate(zip(app_text, texts[arm])) if a != b),
                            min(len(app_text), len(texts[arm])))
                result[f"same_characters_as_{arm}"] = same
                for key in ("decode", "prefill"):
                    result[f"{key}_ratio_vs_{arm}"] = (measured["app"][f"{key}_tok_s"]
                                                       / measured[arm][f"{key}_tok_s"])
            rounds.append(result)
            print(json.dumps({"threads": threads, "round": number, **rounds[-1]}), flush=True)
        record["by_threads"][str(threads)] = {"rounds": rounds,
                                              "summary": _summary(rounds, arms)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({t: v["summary"] for t, v in record["by_threads"].items()}, indent=2))


def _summary(rounds: list[dict], arms: list[str]) -> dict:
    """Medians per arm, and each ratio's median, min and max over the rounds."""
    summary: dict = {}
    for arm in arms:
        summary[arm] = {key: round(statistics.median(r[arm][key] for r in rounds), 3)
                        for key in ("load_s", "first_token_s", "prefill_tok_s",
                                    "decode_tok_s", "peak_rss_mb")}
    for ratio in [key for key in rounds[0] if "_ratio_vs_" in key]:
        values = [r[ratio] for r in rounds]
        summary[ratio] = {"median": round(statistics.median(values), 3),
                          "min": round(min(values), 3), "max": round(max(values), 3)}
    return summary


if __name__ == "__main__":
    main()
