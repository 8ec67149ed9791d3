"""What the seed-table sets cost: distillation time per set, and the standard recipe's time on a set against on the
entire training split (the seed's "train much quicker").

    python benchmarks/recipe_cost.py            # writes benchmarks/results/recipe_cost.json

For every (task, distillation preset, k) of the committed seed-table runs with hard-labelled subsets, the sets are
read from the distilled-set cache (``~/.cache/condense/distilled``, where the seed table made them: nothing is
distilled here): each one's distillation seconds as it recorded them, and the wall time of one recipe run (training
only, one thread, one fresh model) on the first seed's decoded text. The entire-data time is the seed table's reference runs'
(``bench_seed_table.json``: training only, on the same machine).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from condense.cache import atomic_write_json
from condense.report.tables import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"


def main() -> None:
    from condense.bench.common import task_data, training_form
    from condense.bench.seed_table import method_set
    from condense.config.parsing import compose
    from condense.eval.protocols import finetune

    torch.set_num_threads(1)
    entire = json.loads((RESULTS_DIR / "bench_seed_table.json").read_text())["tasks"]
    rows = []
    for path in sorted(RESULTS_DIR.glob("bench_seed_table*.json")):
        results = json.loads(path.read_text())
        table = results["config"]["bench"]["seed_table"]
        if table.get("baseline_labels") != "hard":
            continue
        overrides = [o for o in results["command"].split()[4:] if not o.startswith(("results_name=", "report="))]
        job = compose("bench", overrides)
        for task in results["tasks"]:
            data = task_data(job, task)
            for k in table["ks"]:
                for method in table.get("methods", ["head"]):
                    seconds, recipe = [], []
                    for seed in job.bench.seeds:
                        made = method_set(job, data, method, k, seed)  # read back from the cache
                        seconds.append(made.progress.seconds)
                        if seed == job.bench.seeds[0]:  # the recipe's time depends on the set's size, not its seed
                            started = time.perf_counter()
                            finetune(data.encoder, training_form(data, made, "text"), job.bench.seed_table.recipe,
                                     torch.Generator().manual_seed(0))
                            recipe.append(time.perf_counter() - started)
                    rows.append({"task": task, "method": method, "k": k, "distill_seconds": statistics.mean(seconds),
                                 "distill_seconds_max": max(seconds), "recipe_seconds": statistics.mean(recipe),
                                 "entire_recipe_seconds": (entire.get(task) or {}).get("entire", {}).get("seconds", {}).get("mean"),
                                 "outer_steps": job.bench.outer_steps, "sets": len(seconds), "from": path.name})
                    print(rows[-1], flush=True)
    atomic_write_json(RESULTS_DIR / "recipe_cost.json", {"command": "python benchmarks/recipe_cost.py", "machine": machine(),
                                                         "rows": rows}, indent=1)


if __name__ == "__main__":
    main()
