"""A peer's released sets: read with clear errors, trained by the seed table's recipe, reported beside condense's."""

from __future__ import annotations

import json

import pytest

from condense.bench import peers, peers_report
from condense.bench.__main__ import run_experiment
from condense.config.parsing import compose


def write_sets(folder, k, sets, rows):
    (folder / f"k{k}").mkdir(parents=True, exist_ok=True)
    for index in range(sets):
        lines = [json.dumps(row) for row in rows]
        (folder / f"k{k}" / f"dataset_{index}.jsonl").write_text("\n".join(lines) + "\n")


def test_a_bad_released_set_fails_naming_the_file_line_and_column(tmp_path):
    file = tmp_path / "set.jsonl"
    file.write_text('{"sentence": "fine", "labels": 1}\n{"text": "no sentence", "labels": 0}\n')
    with pytest.raises(ValueError, match=r"set.jsonl, line 2: no column 'sentence'"):
        peers.read_peer_set(file, "sentence", "labels", 2)
    file.write_text('{"sentence": "fine", "labels": 1}\n{"sentence": "bad", "labels": 2}\n')
    with pytest.raises(ValueError, match=r"set.jsonl, line 2: labels=2 is not a class index in \[0, 2\)"):
        peers.read_peer_set(file, "sentence", "labels", 2)
    file.write_text('{"sentence": "good", "labels": 1}\n\n{"sentence": "bad", "labels": 0}\n')
    texts, labels = peers.read_peer_set(file, "sentence", "labels", 2)
    assert texts == ["good", "bad"] and labels.tolist() == [1, 0]


def test_peer_sets_train_beside_condenses_sets_of_the_same_k(tiny_model_dirs, tiny_task_dir, tmp_path):
    folder = tmp_path / "peer"
    write_sets(folder, 1, 3, [{"sentence": "good fun", "labels": 1}, {"sentence": "bad dull", "labels": 0}])
    task = f"{{name: tiny, path: {tiny_task_dir}}}"
    overrides = [f"model.name={tiny_model_dirs['bert']}", f"bench.peers.task={task}", f"bench.peers.path={folder}",
                 "bench.peers.n_sets=2", "bench.peers.n_inits=2", "bench.seeds=[0]", "bench.outer_steps=2",
                 "bench.seed_table.n_inits=1", "bench.seed_table.recipe.min_steps=2", "bench.seed_table.baseline_labels=hard",
                 "bench.seed_table.baselines=[random]", "eval=smoke", "threads=1", "report=false", f"results_dir={tmp_path}"]
    results = run_experiment("peers", compose("bench", [*overrides, "bench.peers.ks=[1]"]), "python -m condense.bench peers")
    cell = results["ks"]["1"]
    assert cell["peer"]["sets"] == 2 and cell["peer"]["finetune"]["n"] == 4  # 2 of the 3 sets x 2 fresh models
    assert set(cell["condense"]) == {"head-mode text", "random"} and cell["condense"]["head-mode text"]["finetune"]["n"] == 1
    assert results["entire"] is None  # no seed-table file with the entire-data runs in results_dir
    text = "\n".join(peers_report.report(results, tmp_path))
    assert "| 1 | " in text and "(head-mode text)" in text
    with pytest.raises(FileNotFoundError, match="k2: no \\*.jsonl sets of 2 per class"):
        run_experiment("peers", compose("bench", [*overrides, "bench.peers.ks=[2]"]), "python -m condense.bench peers")


def test_the_report_reads_the_bars_against_the_peers_reported_ratios():
    def stat(mean, n=20):
        return {"mean": mean, "std": 0.02, "n": n}

    results = {"experiment": "peers", "name": "bench_peers", "command": "python -m condense.bench peers", "preset": "default",
               "seconds": 60, "machine": {"processor": "x86_64", "cpu_count": 2, "torch_threads": 1, "torch": "2"},
               "config": {"model": {"name": "minilm"}, "bench": {"seeds": [0, 1, 2], "seed_table": {"n_inits": 3},
                                                                  "peers": {"n_sets": 10, "n_inits": 1}}},
               "peer": "dilm-sst2", "folder": "/x/dilm-sst2", "task": "sst2", "test_examples": 872,
               "entire": {"subsample": stat(0.89, 2), "seeds": [0, 1], "from": "bench_seed_table.json"},
               "ks": {"5": {"peer": {"finetune": stat(0.70)}, "condense": {"head-mode text": {"finetune": stat(0.78, 9)}}},
                      "10": {"peer": {"finetune": stat(0.75)}, "condense": {"head-mode text": {"finetune": stat(0.76, 9)}}}}}
    text = "\n".join(peers_report.report(results, None))
    # k=5: +8 points, 78/89 = 87.6% >= 78% + 5; k=10: +1 point (beyond one standard error, short of 3), 85.4% < 82% + 5.
    assert "| 5 | 70.0 ± 2.0 | 78.0 ± 2.0 (head-mode text) | +8.0 ± 2.4 (ahead) | 78.7% | 87.6% | 72.5 (78%) | +3 points: yes; ratio ≥ 83%: yes |" in text
    assert "| 10 | 75.0 ± 2.0 | 76.0 ± 2.0 (head-mode text) | +1.0 ± 2.4 (ahead) | 84.3% | 85.4% | 76.3 (82%) | +3 points: no; ratio ≥ 87%: no |" in text
