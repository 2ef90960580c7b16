"""Benchmark the embedded writer model (SmolLM2-135M-Instruct) on this machine's CPU.

    .venv/bin/python bench/bench_model.py [--tokens 128] [--runs 3] [--out bench/results/model.json]

Each measurement runs in a fresh Python process so that import costs and peak memory are
those a user sees:
  1. cold: first load with an empty cache (temporary COMPOSER_HOME): GGUF -> transformers
     conversion plus loading;
  2. cached: a later load from the converted cache (default quantization);
  3. decode, per quantize mode (none = float32, int8, int4): load time, time to first token
     for a writer-sized prompt, greedy decode tokens/s over `--tokens` new tokens after a
     warm-up (EOS is ignored so every run decodes the same count), peak RSS;
  4. quality: teacher-forced top-1 agreement and mean KL of int8 / int4 against float32.
Prints the JSON record and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = (
    "You are writing one section of an illustrated article titled \"Bridges: how people "
    "crossed rivers\". The outline: 1. Ancient bridges of stone and wood; 2. Roman arches "
    "and aqueducts; 3. Iron and the industrial age; 4. Suspension bridges; 5. Bridges "
    "today. Write section 2, \"Roman arches and aqueducts\", in about 250 words and two "
    "paragraphs. Mention how the arch spreads weight, the use of concrete, famous examples "
    "such as the Pont du Gard and the Alcantara bridge, and why many still stand. Write "
    "clear, concrete sentences for a general reader; no headings, no lists."
)
QUALITY_PROMPTS = (
    "Write a short paragraph about the history of bridges.",
    "Give three tips for growing tomatoes at home.",
    "Explain what a black hole is to a child.",
)
MODES = ("none", "int8", "int4")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def settings_for(home: str, quantize: str):
    """Settings for the embedded model on the CPU with a data directory and quantize mode."""
    from composer.config import Settings

    return Settings.from_env({"COMPOSER_HOME": home}, device="cpu", quantize=quantize)


def phase_load(home: str, quantize: str) -> dict:
    """Import, then load the embedded model (converting it if the cache is empty).

    import_s covers torch and transformers' lazily imported model classes (~2 s here), which
    any first load pays; load_s is the loading work itself.
    """
    started = time.perf_counter()
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # noqa: F401

    from models.registry import load_language_model

    imported = time.perf_counter()
    lm = load_language_model(settings_for(home, quantize))
    loaded = time.perf_counter()
    return {"import_s": round(imported - started, 2), "load_s": round(loaded - imported, 2),
            "quantize": lm.quantize, "peak_rss_mb": peak_rss_mb()}


def phase_decode(home: str, quantize: str, tokens: int, runs: int) -> dict:
    """Load with a quantize mode, then time first token and greedy decoding."""
    from composer.types import ChatMessage, GenerationConfig
    from models.registry import load_language_model

    started = time.perf_counter()
    lm = load_language_model(settings_for(home, quantize))
    load_s = time.perf_counter() - started
    lm.eos_ids = []  # decode exactly `tokens` tokens every run
    messages = [ChatMessage("user", PROMPT)]
    config = GenerationConfig(max_new_tokens=tokens, repetition_penalty=1.1)
    "".join(lm.stream(messages, config.replace(max_new_tokens=16)))  # warm-up
    first_token, rates = [], []
    for _ in range(runs):
        started = time.perf_counter()
        pieces = lm.stream(messages, config)
        next(pieces)
        first = time.perf_counter()
        rest = sum(1 for _ in pieces)
        ended = time.perf_counter()
        first_token.append(first - started)
        rates.append((tokens - 1) / (ended - first))
        assert rest > 0
    return {
        "quantize": lm.quantize, "load_with_imports_s": round(load_s, 2),
        "prompt_tokens": len(lm.prompt_ids(messages, tokens)), "new_tokens": tokens,
        "first_token_s": round(statistics.median(first_token), 3),
        "decode_tok_s": round(statistics.median(rates), 1),
        "decode_tok_s_best": round(max(rates), 1), "peak_rss_mb": peak_rss_mb(),
    }


def phase_quality(home: str, tokens: int) -> dict:
    """Top-1 agreement and mean KL (nats) of each quantized model against float32."""
    import torch

    from composer.types import ChatMessage
    from models.registry import load_language_model

    reference = load_language_model(settings_for(home, "none"))
    sequences = []
    for text in QUALITY_PROMPTS:
        ids = reference.prompt_ids([ChatMessage("user", text)], tokens)
        with torch.inference_mode():
            output = reference.model.generate(torch.tensor([ids]), max_new_tokens=tokens,
                                              do_sample=False)
            sequences.append((len(ids), output, reference.model(output).logits[0]))
    report = {}
    for mode in ("int8", "int4"):
        model = load_language_model(settings_for(home, mode)).model
        agree = total = 0
        divergence = 0.0
        for start, output, expected in sequences:
            with torch.inference_mode():
                logits = model(output).logits[0].float()
            want, got = expected[start - 1:-1], logits[start - 1:-1]
            agree += int((want.argmax(-1) == got.argmax(-1)).sum())
            total += want.shape[0]
            divergence += float(torch.nn.functional.kl_div(
                got.log_softmax(-1), want.log_softmax(-1), log_target=True,
                reduction="batchmean"))
        report[mode] = {"top1_agreement": round(agree / total, 3),
                        "mean_kl": round(divergence / len(sequences), 4)}
    return report


def run_phase(args: list[str]) -> dict:
    """Run one phase in a fresh interpreter; its last stdout line is the JSON result."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(tokens: int, runs: int) -> dict:
    """All phases against a fresh temporary COMPOSER_HOME; returns the result record."""
    import torch

    from models.embedded import EMBEDDED_NAME, embedded_quantize

    with tempfile.TemporaryDirectory() as home:
        cold = run_phase(["--phase", "load", "--home", home])
        cached = run_phase(["--phase", "load", "--home", home])
        decode = {mode: run_phase(["--phase", "decode", "--home", home, "--quantize", mode,
                                   "--tokens", str(tokens), "--runs", str(runs)])
                  for mode in MODES}
        quality = run_phase(["--phase", "quality", "--home", home, "--tokens", "64"])
    return {
        "model": EMBEDDED_NAME, "device": "cpu",
        "default_quantize": embedded_quantize("auto", "cpu"),
        "cold_load": cold, "cached_load": cached, "decode": decode,
        "quality_vs_float32": quality,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    """Parse flags; either run one phase (internal) or the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per decode run")
    parser.add_argument("--runs", type=int, default=3, help="decode runs per mode (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model.json")
    parser.add_argument("--phase", choices=("load", "decode", "quality"), help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--quantize", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tokens < 2 or args.runs < 1:
        parser.error("--tokens must be at least 2 and --runs at least 1")
    sys.path.insert(0, str(ROOT))
    if args.phase == "load":
        print(json.dumps(phase_load(args.home, args.quantize)))
    elif args.phase == "decode":
        print(json.dumps(phase_decode(args.home, args.quantize, args.tokens, args.runs)))
    elif args.phase == "quality":
        print(json.dumps(phase_quality(args.home, args.tokens)))
    else:
        record = run(args.tokens, args.runs)
        text = json.dumps(record, indent=2)
        print(text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
