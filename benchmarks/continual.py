"""Run the main job on a task sequence and keep its results as ``benchmarks/results/continual_{sequence}.json``.

    python benchmarks/continual.py                                   # the default: AG News then SST-2
    python benchmarks/continual.py task_sequence=rt_then_imdb        # any ``python -m condense.run`` overrides
    python benchmarks/continual.py --no-run                          # collect an already finished run folder
    python benchmarks/continual.py --name full continual=full out=runs/continual_full/ag_news_then_sst2
                                                 # a variant, kept apart: continual_full_ag_news_then_sst2.json

The run goes to ``runs/continual/{sequence}`` like the plain command, so its finished strategy runs are reused;
``seconds`` in the results is the in-process wall time of that invocation (distillation of missing sets
included), which is the time the bar is about only when nothing was reused — ``reused_runs`` says.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from condense.cache import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_folder(overrides: list[str]) -> Path:
    """The folder ``python -m condense.run`` writes for these overrides (asked of the config, not guessed)."""
    from condense.config.parsing import compose

    return ROOT / compose("run", overrides).out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-run", action="store_true", help="only collect the finished run folder")
    parser.add_argument("--name", default="", help="a variant's name, in the results file's name before the sequence")
    args, overrides = parser.parse_known_args()
    folder = run_folder(overrides)
    started = time.perf_counter()
    if not args.no_run:
        subprocess.run([sys.executable, "-m", "condense.run", *overrides], cwd=ROOT, check=True)
    results = json.loads((folder / "results.json").read_text())
    if not args.no_run:
        results["benchmark"] = {"wall_seconds": time.perf_counter() - started, "reused_runs": results["reused_runs"]}
    name = "_".join(filter(None, [args.name, "_then_".join(results["sequence"])]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    results["config"]["overrides"] = overrides
    results["name"] = f"continual_{name}"
    atomic_write_text(RESULTS / f"continual_{name}.json", json.dumps(results, indent=1) + "\n")
    print((folder / "results.md").read_text())
    print(f"wrote {RESULTS / f'continual_{name}.json'}; python benchmarks/report.py draws its figures into docs/")


if __name__ == "__main__":
    main()
