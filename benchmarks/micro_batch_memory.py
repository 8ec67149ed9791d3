"""Peak memory and seconds per outer step against the real batch size, with the real loss in one forward or in
micro-batches (``distill.real_micro_batch``), at a BERT-base-shaped model.

    python benchmarks/micro_batch_memory.py              # writes benchmarks/results/micro_batch_memory.json
    python benchmarks/micro_batch_memory.py --device cuda --seq-len 128

The model has BERT-base's shape (12 layers, hidden 768, 12 heads, MLP 3072, 30,522 tokens: 109M weights) with random
weights; the real rows are random token ids of ``--seq-len`` tokens with random labels; the synthetic set is 2 examples
per class (2 classes) of the same length; the ``all`` preset's inner loop (every weight trains, one step). What the
step costs does not depend on the weights' values. Each configuration runs in its own process, so that its peak memory
is its own: peak resident memory (``ru_maxrss``) on a CPU, ``torch.cuda.max_memory_allocated`` on CUDA, next to the
baseline (model and data, measured right before the first outer step). One warm-up step, then ``--steps`` timed ones
(:func:`gpu_check.timed_steps`, shared with the GPU check).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from condense.cache import atomic_write_text
from unroll_memory import mean_std

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "micro_batch_memory.json"

MEASURE = r"""
import json, resource, sys
import torch
sys.path.insert(0, "benchmarks")
from gpu_check import random_problem, timed_steps
from condense.config.device import resolve_device
from condense.config.parsing import compose
from condense.models.encoders import load_encoder

folder, batch, micro, seq_len, steps, seed, device, threads = sys.argv[1:9]
batch, seq_len, steps, seed, threads = int(batch), int(seq_len), int(steps), int(seed), int(threads)
torch.set_num_threads(threads)
encoder = load_encoder(folder, device=resolve_device(device))
cuda = encoder.device.type == "cuda"
config = compose("config", ["distill=all", f"distill.real_batch_size={batch}", f"distill.seq_len={seq_len}",
                            f"distill.seed={seed}", "distill.ipc=2",
                            f"distill.real_micro_batch={'null' if micro == 'none' else micro}"]).distill
real, start = random_problem(encoder, 4096, seq_len, seed, features=False)
with open("/proc/self/statm") as statm:  # the resident set right before the first outer step: model and data
    baseline = torch.cuda.memory_allocated(encoder.device) / 2**30 if cuda else int(statm.read().split()[1]) * resource.getpagesize() / 2**30
result = timed_steps(encoder, config, real, start, steps, seed)
peak = result["peak_gib"] if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"seconds_per_step": result["seconds"], "peak_gib": peak, "baseline_gib": baseline,
                  "loss": result["loss"], "device": torch.cuda.get_device_name(encoder.device) if cuda else "cpu",
                  "memory": "torch.cuda.max_memory_allocated" if cuda else "ru_maxrss (peak RSS)",
                  "parameters": encoder.model.num_parameters(), "torch": torch.__version__}))
"""


def bert_base_folder(folder: Path) -> str:
    """A BERT-base-shaped model with random weights, saved with MiniLM's (BERT's uncased) tokenizer."""
    from transformers import AutoModel, AutoTokenizer, BertConfig

    from condense.models.encoders import resolve_model_path

    if not (folder / "config.json").exists():
        AutoModel.from_config(BertConfig(), attn_implementation="eager").save_pretrained(folder)
        AutoTokenizer.from_pretrained(resolve_model_path("minilm")).save_pretrained(folder)
    return str(folder)


def measure(folder: str, batch: int, micro: str, seed: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-c", MEASURE, folder, str(batch), micro, str(args.seq_len), str(args.steps), str(seed),
               args.device, str(args.threads)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"real batch {batch}, micro-batch {micro}, seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 64, 128, 256], help="real batch sizes")
    parser.add_argument("--micro-batch", type=int, default=32, help="rows per forward when micro-batched")
    parser.add_argument("--seq-len", type=int, default=16, help="tokens per real row and synthetic example")
    parser.add_argument("--steps", type=int, default=2, help="timed outer steps, after one warm-up step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="distillation seeds")
    parser.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "condense-bert-base-random")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes (a smoke run: elsewhere)")
    args = parser.parse_args()
    folder = bert_base_folder(args.model_dir)

    configs: dict[str, dict] = {}
    for batch in args.batches:
        for micro in ("none", str(args.micro_batch)):
            runs = [measure(folder, batch, micro, seed, args) for seed in args.seeds]
            row = configs[f"{batch},{micro}"] = {
                "real_batch_size": batch, "real_micro_batch": None if micro == "none" else int(micro),
                "seconds_per_step": mean_std([s for r in runs for s in r["seconds_per_step"]]),
                "peak_gib": mean_std([r["peak_gib"] for r in runs]),
                "baseline_gib": mean_std([r["baseline_gib"] for r in runs]),
                "peak_minus_baseline_gib": mean_std([r["peak_gib"] - r["baseline_gib"] for r in runs]),
                "runs": runs,
            }
            print(f"batch {batch:>4}, micro-batch {micro:>4}: {row['seconds_per_step']['mean']:.1f} ± "
                  f"{row['seconds_per_step']['std']:.1f} s/step, peak {row['peak_gib']['mean']:.2f} GiB "
                  f"(+{row['peak_minus_baseline_gib']['mean']:.2f} over the baseline)", flush=True)

    lo, hi, micro = min(args.batches), max(args.batches), str(args.micro_batch)
    first = configs[f"{lo},none"]["runs"][0]
    ratios = {
        f"peak_{hi}_over_{lo}": {m: configs[f"{hi},{m}"]["peak_gib"]["mean"] / configs[f"{lo},{m}"]["peak_gib"]["mean"]
                                 for m in ("none", micro)},
        "seconds_micro_over_whole": {str(b): configs[f"{b},{micro}"]["seconds_per_step"]["mean"]
                                     / configs[f"{b},none"]["seconds_per_step"]["mean"] for b in args.batches},
    }
    print(f"\npeak at real batch {hi} / at {lo}: {ratios[f'peak_{hi}_over_{lo}'][micro]:.2f} micro-batched "
          f"(goal ≤ 1.5), {ratios[f'peak_{hi}_over_{lo}']['none']:.2f} in one forward")
    print("s/step micro-batched ÷ one forward: " + ", ".join(f"{b}: {r:.2f}" for b, r in ratios["seconds_micro_over_whole"].items()))

    from distill_tasks import machine

    report = {
        "command": " ".join(["python benchmarks/micro_batch_memory.py", *sys.argv[1:]]),
        "machine": machine().replace("1 torch thread", f"{args.threads} torch thread(s)"),
        "device": first["device"], "torch": first["torch"], "memory": first["memory"],
        "model": "BERT-base shape, random weights", "parameters": first["parameters"], "preset": "distill=all",
        "seq_len": args.seq_len, "synthetic_examples": 4, "micro_batch": args.micro_batch,
        "warmup_steps": 1, "measured_steps": args.steps, "seeds": args.seeds, "threads": args.threads,
        "configs": configs, "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
