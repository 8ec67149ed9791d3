"""How far the hypergradients move when the distillation loop runs in bf16 (``distill.precision=bf16``) or, on CUDA,
with TF32 matrix multiplies (``tf32=true``), against the same outer step in fp32.

    python benchmarks/loop_precision.py                # writes benchmarks/results/loop_precision.json
    python benchmarks/loop_precision.py --device cuda  # adds TF32, and times the steps on the GPU

SST-2, MiniLM, 1 example per class from the real-text start; for each preset (``head``, ``last_layer``, ``all`` and
``all`` with first-token attention labels) and seed, one outer step from the same state with the same fresh head and
real batch in each precision. Per learned tensor (the inputs, the soft labels' logits, the inner learning rates, the
attention labels' logits): the relative error ``|g - g_fp32| / |g_fp32|`` and the cosine to the fp32 hypergradient;
the outer loss's absolute difference; seconds per outer step (one warm-up step first).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from condense.cache import atomic_write_text
from condense.config.device import clock, resolve_device, set_tf32
from condense.config.parsing import compose, task_config
from condense.distill.loop import outer_step, real_data
from condense.distill.start import initial_set
from condense.distill.synthetic import SyntheticSet
from condense.jobs.distill_task import load_task_config, task_labels
from condense.models.encoders import load_encoder
from condense.models.features import text_features
from unroll_memory import mean_std

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "loop_precision.json"
PRESETS = {"head": ("head", "none"), "last_layer": ("last_layer", "none"), "all": ("all", "none"),
           "all + attention labels": ("all", "first_token")}


def hypergradients(encoder, real, start, config, precision: str, tf32: bool, seed: int, warmup: bool) -> dict:
    """One outer step's loss, hypergradients and seconds, from the start set with the fresh head of ``seed``."""
    set_tf32(tf32)
    config = replace(config, precision=precision)
    if warmup:
        synthetic = SyntheticSet.from_start(encoder, start, config, torch.Generator().manual_seed(seed))
        outer_step(encoder, synthetic, real, torch.Generator().manual_seed(seed)).backward()
    synthetic = SyntheticSet.from_start(encoder, start, config, torch.Generator().manual_seed(seed))
    started = clock(encoder.device)
    loss = outer_step(encoder, synthetic, real, torch.Generator().manual_seed(seed))
    loss.backward()
    seconds = clock(encoder.device) - started
    set_tf32(False)
    names = ("inputs", "label_logits", "log_lrs", "attention_logits")
    grads = {name: getattr(synthetic, name).grad.detach().double().cpu() for name in names
             if getattr(synthetic, name) is not None and getattr(synthetic, name).grad is not None}
    return {"loss": loss.item(), "grads": grads, "seconds": seconds}


def compare(step: dict, reference: dict) -> dict:
    errors = {}
    for name, grad in step["grads"].items():
        ref = reference["grads"][name]
        errors[name] = {"relative_error": ((grad - ref).norm() / ref.norm()).item(),
                        "cosine": F.cosine_similarity(grad.flatten(), ref.flatten(), dim=0).item()}
    return {"loss_difference": abs(step["loss"] - reference["loss"]), "tensors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoder = load_encoder("minilm", device=resolve_device(args.device))
    cuda = encoder.device.type == "cuda"
    task_cfg = task_config(args.task, "benchmark")
    task = load_task_config(task_cfg)
    labels = task_labels(task.train, encoder)
    precisions = [("bf16", False)] + ([("fp32", True)] if cuda else [])  # (distill.precision, tf32) against fp32

    rows: dict[str, dict] = {}
    for name in args.presets:
        distill_preset, attention = PRESETS[name]
        config = compose("config", [f"distill={distill_preset}", f"distill.attention_labels={attention}"]).distill
        features = None if config.trains_encoder else text_features(encoder, task.train["text"], task_cfg.max_length,
                                                                     f"{task.name} train texts")
        real = real_data(encoder, task, labels, features, task_cfg.max_length, config)
        start = initial_set(encoder, task.train["text"], labels, task.label_names, 1, config.seq_len, 0)
        per_seed = []
        for seed in args.seeds:
            reference = hypergradients(encoder, real, start, config, "fp32", False, seed, warmup=seed == args.seeds[0])
            measured = {"fp32": {"seconds": reference["seconds"]}}
            for precision, tf32 in precisions:
                label = "tf32" if tf32 else precision
                step = hypergradients(encoder, real, start, config, precision, tf32, seed, warmup=seed == args.seeds[0])
                measured[label] = {"seconds": step["seconds"], **compare(step, reference)}
            per_seed.append(measured)
        row = rows[name] = {"preset": distill_preset, "attention_labels": attention, "inner_steps": config.inner_steps,
                            "real_batch_size": config.real_batch_size, "seeds": per_seed, "summary": {}}
        for label in per_seed[0]:
            summary = row["summary"][label] = {"seconds": mean_std([s[label]["seconds"] for s in per_seed])}
            if label != "fp32":
                summary["loss_difference"] = mean_std([s[label]["loss_difference"] for s in per_seed])
                for tensor in per_seed[0][label]["tensors"]:
                    summary[tensor] = {key: mean_std([s[label]["tensors"][tensor][key] for s in per_seed])
                                       for key in ("relative_error", "cosine")}
        for label, summary in row["summary"].items():
            errors = ", ".join(f"{t} {v['relative_error']['mean']:.2e}" for t, v in summary.items()
                               if isinstance(v, dict) and "relative_error" in v)
            print(f"{name:>24} {label:>5}: {summary['seconds']['mean']:.2f} s/step{'; relative error ' + errors if errors else ''}",
                  flush=True)

    from distill_tasks import machine

    report = {
        "command": " ".join(["python benchmarks/loop_precision.py", *sys.argv[1:]]),
        "machine": machine().replace("1 torch thread", f"{args.threads} torch thread(s)"),
        "device": torch.cuda.get_device_name(encoder.device) if cuda else "cpu", "torch": torch.__version__,
        "task": args.task, "model": "minilm", "ipc": 1, "seeds": args.seeds, "presets": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
