"""How fast a bad command line fails: every kind of config error, from an empty folder, before any data loads.

    python benchmarks/config_errors.py            # writes benchmarks/results/config_errors.json

Each case runs ``python -m <job> <override>`` in a fresh empty folder (so no data, cache or run folder is there to
find) ``--repeats`` times; the table gives the wall time per process, the exit code, whether stderr names the key,
and whether the process left anything behind in the folder. The bar (issue 9) is under 5 seconds.
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

from condense.cache import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "config_errors.json"
CASES = [  # (what is wrong, module, override, the key the message must name)
    ("wrong type", "condense.distill", "distill.lr_inputs=abc", "distill.lr_inputs"),
    ("unknown key", "condense.distill", "distill.foo=1", "distill.foo"),
    ("unknown preset", "condense.distill", "distill=foo", "distill/foo"),
    ("unknown choice", "condense.distill", "distill.params=foo", "distill.params"),
    ("negative count", "condense.distill", "distill.ipc=-1", "distill.ipc"),
    ("missing device", "condense.distill", "device=cuda:7", "device"),
    ("unknown strategy", "condense.run", "continual.strategies=[naive,magic]", "continual.strategies"),
    ("unknown task", "condense.run", "task_sequence.tasks=[ag_news,agnews]", "task_sequence.tasks"),
    ("bad suite value", "condense.bench", "bench.ipc=0", "bench.ipc"),
]


def run_case(module: str, override: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", module, *(["scaling"] if module == "condense.bench" else []), override]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "returncode": result.returncode, "stderr": result.stderr,
                "left_behind": sorted(os.listdir(folder))}


def first_message(stderr: str) -> str:
    """The error's own words: the first line of Hydra's error block, or condense's ``config error:`` line."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("Set the environment")]
    ours = [line for line in lines if line.startswith("config error:")]
    return ours[0] if ours else next((line for line in lines if not line.startswith(" ")), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases = []
    print("| error | command | s (mean ± std) | exit | names the key | leaves files |")
    print("|---|---|---:|---:|---|---|")
    for what, module, override, key in CASES:
        runs = [run_case(module, override) for _ in range(args.repeats)]
        seconds = [run["seconds"] for run in runs]
        case = {
            "error": what, "command": f"python -m {module} {override}", "key": key,
            "seconds": {"mean": statistics.fmean(seconds), "std": statistics.stdev(seconds) if len(seconds) > 1 else 0.0,
                        "n": len(seconds)},
            "returncodes": sorted({run["returncode"] for run in runs}),
            "names_key": all(key in run["stderr"] for run in runs),
            "left_behind": sorted({name for run in runs for name in run["left_behind"]}),
            "message": first_message(runs[0]["stderr"]),
        }
        cases.append(case)
        s = case["seconds"]
        print(f"| {what} | `{case['command']}` | {s['mean']:.2f} ± {s['std']:.2f} | {case['returncodes']} | "
              f"{case['names_key']} | {case['left_behind'] or 'nothing'} |")
    report = {
        "command": "python benchmarks/config_errors.py" + (f" --repeats {args.repeats}" if args.repeats != 3 else ""),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "cases": cases,
    }
    atomic_write_text(RESULTS, json.dumps(report, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
