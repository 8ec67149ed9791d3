"""One table of many artefacts: every distilled-set folder under a folder (a sweep's, or ``runs/``), a row each.

The end of every ``-m`` sweep and ``python -m condense.sweep collect DIR`` write ``DIR/sweep.md`` and
``DIR/sweep.json``. The table shows the config keys that differ between rows (the swept ones) and the accuracies of
``metrics.json``. A folder that cannot be read, and a Hydra job folder without an artefact (a job that failed or
has not finished), is listed by name with the reason and never stops the collection. After a search
(``hydra/sweeper=distill_search``) ``DIR/best.yaml`` names the best trial: its artefact folder, validation score,
overrides, full config, and the command that distils those values on every training row and tests them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from condense.artifact.distilled_set import DistilledSet
from condense.artifact.format import META_FILE
from condense.cache import atomic_write_json, atomic_write_text
from condense.report.tables import SETS, points, table_head, table_row

TABLE_FILE, JSON_FILE, BEST_FILE = "sweep.md", "sweep.json", "best.yaml"
# Where a task's data lives, not what it is: the task column names it.
HIDDEN_KEYS = ("out", "task.name", "task.path", "task.train_file", "task.test_file", "task.data_dir", "task.hub.")
# (protocol in metrics.json, column prefix): a search trial's score, then the two test protocols.
PROTOCOLS = (("validation", "validation: "), ("learned", ""), ("finetune", "ft: "))


@dataclass
class Collection:
    root: Path
    rows: list[dict] = field(default_factory=list)  # folder, task, examples, config (dotted keys), metrics, score
    problems: list[dict] = field(default_factory=list)  # folder, reason

    def varying_keys(self) -> list[str]:
        """Config keys whose values differ between rows, in config order."""
        keys = dict.fromkeys(key for row in self.rows for key in row["config"])
        return [key for key in keys if not key.startswith(HIDDEN_KEYS)
                and len({repr(row["config"].get(key)) for row in self.rows}) > 1]

    def metric_columns(self) -> list[tuple[str, str, str]]:
        """(protocol, set, header) of every accuracy some row has, in the order of ``condense.report.tables.SETS``."""
        return [(protocol, name, prefix + name) for protocol, prefix in PROTOCOLS for name in SETS
                if any(name in (row["metrics"].get(protocol) or {}) for row in self.rows)]

    def markdown(self) -> str:
        keys, metrics = self.varying_keys(), self.metric_columns()
        legend = (f"{len(self.rows)} artefact(s). Accuracy in points, mean ± std over fresh models: the set's own "
                  "learned inner protocol; ft: the standard fine-tuning recipe; validation: a search trial's score on "
                  "the validation split carved from its training rows (its test split never read).")
        lines = [f"# {self.root}", "", legend, ""]
        lines += table_head(["folder", "task", *keys, *(header for _, _, header in metrics)])
        for row in self.rows:
            cells = [row["folder"], str(row["task"]), *(value_text(row["config"].get(key)) for key in keys)]
            cells += [points((row["metrics"].get(protocol) or {}).get(name)) for protocol, name, _ in metrics]
            lines.append(table_row(cells))
        if self.problems:
            lines += ["", f"{len(self.problems)} folder(s) without a usable artefact:"]
            lines += [f"- `{problem['folder']}`: {problem['reason']}" for problem in self.problems]
        return "\n".join(lines)

    def best(self) -> dict | None:
        """The search trial with the highest validation score, or None when no row is a search trial."""
        scored = [row for row in self.rows if row["score"] is not None]
        return max(scored, key=lambda row: row["score"]) if scored else None


def collect(root: str | Path) -> Collection:
    """Every artefact folder and Hydra job folder under ``root`` (``root`` included), in job order."""
    root = Path(root)
    collection = Collection(root)
    for folder in candidate_folders(root):
        name = folder.relative_to(root).as_posix()
        if not (folder / META_FILE).exists():
            collection.problems.append({"folder": name, "reason": "no artefact: the job failed or has not finished "
                                                                  "(its log is in this folder)"})
            continue
        try:
            collection.rows.append(read_row(folder, name))
        except (OSError, ValueError) as err:  # ArtifactError too: reported, and the other folders still collected
            collection.problems.append({"folder": name, "reason": f"{type(err).__name__}: {err}"})
            continue
        if not collection.rows[-1]["metrics"]:
            collection.problems.append({"folder": name, "reason": "distilled but not evaluated yet (metrics.json is "
                                                                  "empty); rerun the same command to evaluate it"})
    return collection


def candidate_folders(root: Path) -> list[Path]:
    """Folders holding an artefact (``meta.json``) or a Hydra job's record (``.hydra/``), submitit's files aside."""
    found = {path.parent for path in root.rglob(META_FILE)} | {path.parent for path in root.rglob(".hydra")}
    found = {f for f in found if not any(part.startswith(".") for part in f.relative_to(root).parts)}
    return sorted(found, key=lambda f: natural_key(f.relative_to(root).as_posix()))


def natural_key(text: str) -> list:
    """``2_sst2`` before ``10_sst2``: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def read_row(folder: Path, name: str) -> dict:
    distilled = DistilledSet.load(folder)
    validation = (distilled.metrics.get("validation") or {}).get("distilled")
    return {
        "folder": name,
        "task": distilled.meta.get("task"),
        "examples": distilled.num_examples,
        "config": flatten(distilled.meta.get("config") or {}),
        "metrics": distilled.metrics,
        "score": None if validation is None else validation["mean"],
    }


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write(collection: Collection) -> list[Path]:
    """``sweep.md`` and ``sweep.json`` in the collected folder, and ``best.yaml`` after a search; their paths."""
    root = collection.root
    written = [
        atomic_write_text(root / TABLE_FILE, collection.markdown() + "\n"),
        atomic_write_json(root / JSON_FILE, {"root": str(root), "varying_keys": collection.varying_keys(),
                                             "rows": collection.rows, "problems": collection.problems}),
    ]
    best = collection.best()
    if best is not None:
        written.append(atomic_write_text(root / BEST_FILE, OmegaConf.to_yaml(best_record(root, best))))
    return written


def best_record(root: Path, row: dict) -> dict:
    """The best trial: where its artefact is, its score, its overrides, and the command that tests its values."""
    overrides_file = root / row["folder"] / ".hydra" / "overrides.yaml"
    overrides = list(OmegaConf.load(overrides_file)) if overrides_file.exists() else []
    final = [o for o in overrides if not o.startswith(("search.", "hydra"))]
    return {
        "artefact": str(root / row["folder"]),
        "validation_accuracy": row["score"],
        "validation": row["metrics"]["validation"]["distilled"],
        "split": row["metrics"].get("split"),
        "overrides": overrides,
        # Distils the best values on every training row, then tests them against the baselines.
        "command": shlex.join(["python", "-m", "condense.distill", *final]),
        "config": unflatten(row["config"]),
    }


def unflatten(flat: dict[str, Any]) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested
