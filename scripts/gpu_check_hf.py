#!/usr/bin/env python3
"""Kestrel's CUDA logits against PyTorch + transformers on the same weights.

Part of the GPU check (scripts/gpu-check-run). Reads the prompt logits that
`kestrel-generate --device=cuda --logits-out` wrote and the greedy tokens of its
--json output, runs the same checkpoint with transformers (F32 on the GPU, the
exact reference; and BF16, what a BF16 deployment computes), and prints the
maximum absolute logit differences and how many greedy tokens agree.

  gpu_check_hf.py MODEL_DIR KESTREL_LOGITS.jsonl KESTREL_GENERATE.json
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main():
    model_dir, logits_path, generate_path = sys.argv[1:4]
    rows = [json.loads(line) for line in open(logits_path)]
    ids = [r["token"] for r in rows]
    kestrel = torch.tensor([r["logits"] for r in rows], dtype=torch.float32)
    generated = None
    for line in open(generate_path):
        line = line.strip()
        if line.startswith("{") and "output_ids" in line:
            generated = json.loads(line)["output_ids"]
    for dtype in (torch.float32, torch.bfloat16):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).cuda().eval()
        prompt = torch.tensor([ids], device="cuda")
        with torch.no_grad():
            logits = model(prompt).logits[0].float().cpu()
            diff = (logits - kestrel).abs()
            name = str(dtype).replace("torch.", "")
            scale = logits.abs().max().item()
            print(f"transformers {name}: max |logit diff| all {len(ids)} positions "
                  f"{diff.max().item():.3e}, last position {diff[-1].max().item():.3e} "
                  f"(logits up to {scale:.2f}); argmax agrees at "
                  f"{int((logits.argmax(-1) == kestrel.argmax(-1)).sum())}/{len(ids)} positions")
            if generated is not None:
                out = model.generate(prompt, max_new_tokens=len(generated), do_sample=False,
                                     min_new_tokens=len(generated))
                theirs = out[0, len(ids):].tolist()
                same = 0
                for a, b in zip(theirs, generated):
                    if a != b:
                        break
                    same += 1
                print(f"transformers {name}: greedy tokens identical for the first "
                      f"{same}/{len(generated)}")
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
