"""A real distillation killed with SIGKILL at a random moment, then re-run with the same command: how much work was
lost, and whether the result is the uninterrupted run's, tensor for tensor.

    python benchmarks/resume_after_kill.py                       # writes benchmarks/results/resume_after_kill.json
    python benchmarks/resume_after_kill.py --task rotten_tomatoes --kills 2 --seed 1

The distill config is the default (``distill=head``, 400 outer steps, checkpoints every 100 steps and every
``checkpoint_seconds``); ``eval=smoke`` keeps the evaluation that follows short, since it is not what is measured.
Each kill lands at a uniformly random time within the distillation (its length is measured by the uninterrupted
run first). Lost work is the wall time between the last checkpoint written and the kill: what the re-run must
redo.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from condense.cache import atomic_write_json
from condense.distill.checkpoint import FILE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "resume_after_kill.json"
STARTED = "distilling "  # condense.jobs.distill_task logs this line when the outer loop starts or resumes


def command(task: str, out: Path, threads: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "condense.distill", f"task={task}", "eval=smoke", f"threads={threads}", f"out={out}", *extra]


def run_until(cmd: list[str], kill_after: float | None) -> dict:
    """Run ``cmd``; with ``kill_after``, SIGKILL it that many seconds after its outer loop started. Its output is
    drained by a thread all along, so the process never blocks on a full pipe."""
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines, marks, loop_started = [], {}, threading.Event()

    def drain() -> None:
        for line in process.stdout:
            lines.append(line)
            if "start" not in marks and STARTED in line and ("per class" in line or "resuming from" in line):
                marks["start"] = time.monotonic()
                loop_started.set()
            if "distilled" in line and "outer steps/s" in line:
                marks["end"] = time.monotonic()
        loop_started.set()  # the process ended

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    if kill_after is not None:
        loop_started.wait()
        time.sleep(max(0.0, kill_after - (time.monotonic() - marks.get("start", time.monotonic()))))
        process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        process.wait()
        reader.join()
        return {"killed_at": killed_at, "log": "".join(lines)}
    process.wait()
    reader.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{''.join(lines[-40:])}")
    seconds = marks["end"] - marks["start"] if "start" in marks and "end" in marks else None  # None: a reused set
    return {"loop_seconds": seconds, "log": "".join(lines)}


def tensors(out: Path) -> dict:
    return load_file(out / "embeddings.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--kills", type=int, default=1, help="kill-and-resume trials, each at its own random time")
    parser.add_argument("--seed", type=int, default=0, help="for the random kill times")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="more overrides for python -m condense.distill")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        whole = run_until(command(args.task, scratch / "whole", args.threads, args.overrides), None)
        reference = tensors(scratch / "whole")
        trials = []
        for trial in range(args.kills):
            out = scratch / f"killed-{trial}"
            # Within the loop: it runs as long again, give or take the machine's load, so keep clear of its end.
            kill_after = rng.uniform(0.0, 0.9 * whole["loop_seconds"])
            killed = run_until(command(args.task, out, args.threads, args.overrides), kill_after)
            checkpoint = out / FILE
            if checkpoint.exists():
                with safe_open(str(checkpoint), framework="pt") as f:
                    step = int(f.metadata()["step"])
                lost = killed["killed_at"] - checkpoint.stat().st_mtime
            else:  # killed before the first checkpoint: everything since the loop started is redone
                step, lost = 0, kill_after
            if (out / "meta.json").exists():
                print(f"trial {trial}: the loop had ended before the kill at {kill_after:.1f} s; not counted")
                continue
            resumed = run_until(command(args.task, out, args.threads, args.overrides), None)
            again = tensors(out)
            identical = again.keys() == reference.keys() and all(
                bool((again[name] == tensor).all()) for name, tensor in reference.items())
            trials.append({"kill_after_seconds": kill_after, "checkpoint_step": step, "lost_seconds": lost,
                           "resumed_log_line": next((l.strip() for l in resumed["log"].splitlines() if "resuming from" in l), None),
                           "identical_tensors": identical})
            print(f"trial {trial}: killed {kill_after:.1f} s into the loop, resumed from step {step}, lost {lost:.1f} s "
                  f"of work, identical tensors: {identical}")
    results = {"command": " ".join(["python benchmarks/resume_after_kill.py", *sys.argv[1:]]),
               "distill_command": " ".join(["python", *command(args.task, Path("OUT"), args.threads, args.overrides)[1:]]),
               "uninterrupted_loop_seconds": whole["loop_seconds"], "trials": trials}
    atomic_write_json(RESULTS, results, indent=1)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
