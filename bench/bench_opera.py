"""Time per token of OPERA decoding against greedy and beam search, on this machine's CPU.

    .venv/bin/python bench/bench_opera.py [--tokens 32] [--rounds 3] [--no-embedded]
                                          [--out bench/results/opera.json]

Models: a tiny random Llama with a realistic shape (hidden 256, 4 layers, 8 heads / 4 KV
heads, vocabulary 8192; built from a config, no download) and, unless --no-embedded, the
embedded writer on torch (models/embedded.py load_embedded_torch, COMPOSER_HOME or
/tmp/xhome caches the conversion; the torch engine's default quantization). Methods, each decoding exactly --tokens new
tokens (no EOS) after a writer-sized prompt:
  greedy   model.generate(num_beams=1, do_sample=False)
  beam3    model.generate(num_beams=3, do_sample=False)
  opera    models.opera.opera_generate, OperaSettings() (3 beams, 5 attention candidates)
  opera_efficient  OperaSettings.efficient() (3 beams, 1 candidate)
The methods run in turn, alternating, for --rounds rounds after one warm-up round; the
median seconds per token is reported with its ratio to beam3. OPERA runs with eager
attention (it needs the weights); greedy and beam search with the model's own (SDPA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench_model import PROMPT  # noqa: E402 (the same section prompt as bench_model)

METHODS = ("greedy", "beam3", "opera", "opera_efficient")


def tiny_model():
    """A random Llama of a realistic small shape, float32, eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=688,
                         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                         max_position_embeddings=1024, bos_token_id=None, eos_token_id=None,
                         pad_token_id=0)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def run_method(model, method: str, prompt, tokens: int) -> int:
    """Decode `tokens` new tokens with `method`; returns how many came out."""
    import torch

    from composer.types import GenerationConfig
    from models.opera import OperaSettings, opera_generate

    if method in ("greedy", "beam3"):
        with torch.inference_mode():
            output = model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                    num_beams=1 if method == "greedy" else 3, do_sample=False,
                                    max_new_tokens=tokens, min_new_tokens=tokens,
                                    repetition_penalty=1.1, pad_token_id=0,
                                    eos_token_id=None)
        return output.shape[1] - prompt.shape[1]
    settings = OperaSettings() if method == "opera" else OperaSettings.efficient()
    config = GenerationConfig(max_new_tokens=tokens, num_beams=1, repetition_penalty=1.1)
    return len(opera_generate(model, prompt, config, [], settings=settings))


def bench_model(name: str, model, prompt, tokens: int, rounds: int) -> dict:
    """Median seconds per token of each method, alternating methods within each round."""
    times: dict[str, list[float]] = {method: [] for method in METHODS}
    produced: dict[str, int] = {}
    for round_index in range(rounds + 1):  # round 0 warms up
        for method in METHODS:
            start = time.perf_counter()
            produced[method] = run_method(model, method, prompt, tokens)
            elapsed = time.perf_counter() - start
            if round_index:
                times[method].append(elapsed / produced[method])
            print(f"{name} round {round_index} {method}: {elapsed:.2f} s", file=sys.stderr)
    beam = statistics.median(times["beam3"])
    return {
        "prompt_tokens": prompt.shape[1],
        "new_tokens": produced,
        "seconds_per_token": {m: round(statistics.median(times[m]), 5) for m in METHODS},
        "x_beam3": {m: round(statistics.median(times[m]) / beam, 2) for m in METHODS},
        "runs": {m: [round(t, 5) for t in times[m]] for m in METHODS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-embedded", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench/results/opera.json"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    record: dict = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpus": os.cpu_count(), "threads": torch.get_num_threads()},
        "tokens": args.tokens, "rounds": args.rounds,
    }
    tiny = tiny_model()
    prompt = torch.randint(1, 8192, (1, 160), generator=torch.Generator().manual_seed(1))
    record["tiny_llama_h256_l4"] = bench_model("tiny", tiny, prompt, args.tokens, args.rounds)

    if not args.no_embedded:
        from composer.config import Settings
        from composer.types import ChatMessage
        from models.embedded import load_embedded_torch

        home = os.environ.get("COMPOSER_HOME", "/tmp/xhome")
        start = time.perf_counter()
        lm = load_embedded_torch(Settings.from_env({"COMPOSER_HOME": home}, device="cpu"))
        load_s = time.perf_counter() - start
        ids = lm.prompt_ids([ChatMessage("user", PROMPT)], args.tokens)
        result = bench_model("embedded", lm.model, torch.tensor([ids]), args.tokens,
                             args.rounds)
        result.update(name=lm.name, quantize=lm.quantize, load_s=round(load_s, 1))
        record["embedded"] = result

    text = json.dumps(record, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
