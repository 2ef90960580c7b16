"""How close each engine's next-token distribution stays to the float32 model.

    .venv/bin/python bench/bench_engine_quality.py [--tokens 128]
        [--out bench/results/engine_quality.json]

The float32 transformers model (the shipped Q4_1 GGUF de-quantized) writes a greedy reply to
each of bench_model's QUALITY_PROMPTS; every engine is then fed the same prompt and reply
token by token (teacher forcing) and its logits at each reply position are compared with
float32's: top-1 agreement (same argmax) and mean KL(float32 || engine) in nats. Engines:
  torch-int4    the torch path's int4 weights (COMPOSER_ENGINE=torch, the old default);
  llama-q4_1    llama.cpp on the shipped GGUF as it is;
  llama-q8_0    llama.cpp on the Q8_0 re-quantization the app loads (ensure_llama_gguf).
llama.cpp is fed one token per decode call, as the app decodes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_model import QUALITY_PROMPTS, settings_for  # noqa: E402
from bench.bench_plora_target import processor  # noqa: E402


def llama_logits(gguf: Path, prompt: list[int], reply: list[int]) -> "object":
    """[len(reply), vocab] float32 logits of llama.cpp predicting each reply token."""
    import numpy as np

    from models.llamacpp import LlamaCppLM
    from models.llamacpp_runtime import LlamaContext

    lm = LlamaCppLM(gguf, threads=1)
    ctx = LlamaContext(lm)
    rows = []
    try:
        ctx.prefill(prompt)
        for position, token_id in enumerate(reply):
            pointer = lm.api.llama_get_logits_ith(ctx.ctx, -1)
            rows.append(np.ctypeslib.as_array(pointer, shape=(lm.vocab.size,)).copy())
            ctx.decode([(token_id, len(prompt) + position, 0, True)])
    finally:
        ctx.free()
        lm.close()
    return np.stack(rows)


def compare(reference: "object", logits: "object") -> tuple[int, float]:
    """(positions whose argmax agrees, summed KL(reference || logits)) over the rows."""
    import torch

    want = torch.as_tensor(reference).float().log_softmax(-1)
    got = torch.as_tensor(logits).float().log_softmax(-1)
    agree = int((want.argmax(-1) == got.argmax(-1)).sum())
    kl = float(torch.nn.functional.kl_div(got, want, log_target=True, reduction="sum"))
    return agree, kl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "engine_quality.json")
    args = parser.parse_args()
    import torch

    from composer.types import ChatMessage
    from models.embedded import embedded_gguf_path, ensure_llama_gguf
    from models.registry import load_language_model

    torch.manual_seed(0)
    home = tempfile.mkdtemp(prefix="bench-engine-quality-")
    reference = load_language_model(settings_for(home, "none"))
    int4 = load_language_model(settings_for(home, "int4"))
    ggufs = {"llama-q4_1": embedded_gguf_path(),
             "llama-q8_0": ensure_llama_gguf(settings_for(home, "none").cache_dir)}
    totals = {name: [0, 0.0] for name in ("torch-int4", *ggufs)}
    positions = 0
    for text in QUALITY_PROMPTS:
        prompt = reference.prompt_ids([ChatMessage("user", text)], args.tokens)
        with torch.inference_mode():
            output = reference.model.generate(torch.tensor([prompt]), do_sample=False,
                                              max_new_tokens=args.tokens)
            expected = reference.model(output).logits[0, len(prompt) - 1:-1].float()
            quantized = int4.model(output).logits[0, len(prompt) - 1:-1].float()
        reply = output[0, len(prompt):].tolist()
        positions += len(reply)
        scores = {"torch-int4": compare(expected, quantized)}
        for name, gguf in ggufs.items():
            scores[name] = compare(expected, llama_logits(gguf, prompt, reply))
        for name, (agree, kl) in scores.items():
            totals[name][0] += agree
            totals[name][1] += kl
        print(json.dumps({"prompt": text[:40], "tokens": len(reply),
                          **{name: {"agree": a, "kl_sum": round(k, 3)}
                             for name, (a, k) in scores.items()}}), flush=True)
    record = {"tokens_per_prompt": args.tokens, "prompts": len(QUALITY_PROMPTS),
              "positions": positions, "processor": processor(),
              "machine": platform.machine(),
              "against_float32": {name: {"top1_agreement": round(agree / positions, 4),
                                         "mean_kl": round(kl / positions, 5)}
                                  for name, (agree, kl) in totals.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
