"""How far a head trained by the recipe's AdamW can go on frozen features, whatever set it is trained on.

    python benchmarks/recipe_ceiling.py        # writes benchmarks/results/recipe_ceiling.json

The recipe trains a fresh head with AdamW for 30 steps. Adam's normalised step m/sqrt(v) moves every weight by about
the same amount, so after a few consistent steps the head's change is close to lr times a sign pattern: the set
chooses which sign each weight moves by, not how far. So with the encoder frozen, no training set (distilled or real)
can take the recipe's head past the best sign-pattern classifier. This measures, per task on the frozen MiniLM
features of every training row: the linear probe (full-batch AdamW to convergence, as ``condense.distill``'s
reference); the probe's own sign pattern, sign(w_c - mean_c w_c), with one scale and the biases fitted on the
training rows; and the same for the class means, also with no bias at all (the recipe's 30 AdamW steps move a
fresh head's bias by about the sum of their learning rates, 0.03 by arithmetic, far less than the offset the fitted bias corrects). What the recipe gains beyond those numbers comes from its encoder
steps. Seeds change the probe's fresh head; test accuracy on the whole test split.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from condense.cache import atomic_write_json, to_jsonable
from condense.report.tables import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "recipe_ceiling.json"


def fitted_scale_and_bias(scores: torch.Tensor, labels: torch.Tensor, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """One positive scale and a bias per class for fixed class scores, fitted by cross-entropy (Adam)."""
    log_scale = torch.zeros(1, requires_grad=True)
    bias = torch.zeros(scores.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([log_scale, bias], lr=0.05)
    for _ in range(steps):
        loss = F.cross_entropy(scores * log_scale.exp() + bias, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return log_scale.exp().detach(), bias.detach()


def sign_pattern_accuracy(direction: torch.Tensor, train: torch.Tensor, labels: torch.Tensor, test: torch.Tensor,
                          test_labels: torch.Tensor, fit_bias: bool = True) -> float:
    """Test accuracy of the classifier sign(direction - its class mean), with a scale and biases fitted on the
    training rows, or with no bias (what a head whose bias barely moves from its small init amounts to)."""
    pattern = torch.sign(direction - direction.mean(0, keepdim=True))
    if not fit_bias:
        return ((test @ pattern.T).argmax(1) == test_labels).float().mean().item()
    scale, bias = fitted_scale_and_bias(train @ pattern.T, labels)
    return ((test @ pattern.T * scale + bias).argmax(1) == test_labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["ag_news", "imdb", "sst2", "rotten_tomatoes"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    from condense.bench.common import task_data
    from condense.config.parsing import compose
    from condense.eval.protocols import probe_head
    from condense.models.heads import head_accuracy

    torch.set_num_threads(1)
    job = compose("bench", ["threads=1"])
    started, tasks = time.perf_counter(), {}
    for name in args.tasks:
        data = task_data(job, name)
        train, labels = data.train_features.float(), data.train_labels
        test, test_labels = data.test.features.float(), data.test.labels
        probes, signs = [], []
        for seed in args.seeds:
            head = probe_head(train, labels, seed)
            probes.append(head_accuracy(head, test, test_labels))
            signs.append(sign_pattern_accuracy(head["head.weight"], train, labels, test, test_labels))
        means = torch.stack([train[labels == c].mean(0) for c in range(data.task.num_classes)])
        tasks[name] = {
            "linear_probe": {"mean": statistics.mean(probes), "std": statistics.stdev(probes), "n": len(probes)},
            "probe_sign_pattern": {"mean": statistics.mean(signs), "std": statistics.stdev(signs), "n": len(signs)},
            "class_mean_sign_pattern": sign_pattern_accuracy(means, train, labels, test, test_labels),
            "class_mean_sign_pattern_no_bias": sign_pattern_accuracy(means, train, labels, test, test_labels, fit_bias=False),
            "train_examples": len(labels), "test_examples": len(test_labels),
        }
        print(name, {k: v for k, v in tasks[name].items() if k.endswith(("probe", "pattern"))}, flush=True)
    atomic_write_json(RESULTS, {"command": "python benchmarks/recipe_ceiling.py", "machine": machine(),
                                "seconds": time.perf_counter() - started, "seeds": args.seeds, "tasks": to_jsonable(tasks)},
                      indent=1)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
