"""End to end on a tiny model and task: distil, decode, evaluate, write and reload the artefact."""

import json
import subprocess
import sys

import pytest
import torch
from condense.eval import baselines
from condense.jobs import distill_task as pipeline
from condense.artifact.distilled_set import DistilledSet
from condense.config.parsing import ConfigError, compose
from condense.data.tasks import DataError
from condense.jobs.distill_task import distill_task
from condense.report.tables import SETS


def config(tiny_model_dirs, tiny_task_dir, out, *overrides):
    return compose("config", [
        "task=local", f"task.path={tiny_task_dir}", f"model.name={tiny_model_dirs['bert']}", "eval=smoke",
        "distill.outer_steps=4", "distill.checkpoint_every=2", "distill.seq_len=8", "distill.real_batch_size=8",
        f"out={out}", *overrides,
    ])


@pytest.mark.parametrize("mode", ["distill=head", "distill=last_layer", "distill=all"])
def test_distill_task_writes_a_complete_artefact(tiny_model_dirs, tiny_task_dir, tmp_path, mode):
    distilled = distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run", mode, "distill.ipc=2"))
    loaded = DistilledSet.load(tmp_path / "run")
    assert loaded.num_examples == 6 and loaded.examples_per_class == 2
    assert loaded.label_names == ["business", "sports", "tech"]
    assert loaded.embeddings.shape == (6, 8, 16) and len(loaded.texts) == 6
    torch.testing.assert_close(loaded.embeddings, distilled.embeddings)
    assert loaded.meta["inner"]["params"] == distilled.meta["config"]["distill"]["params"]
    # eval=smoke: 2 fresh heads per set under the learned protocol, 1 fine-tuning run, 1 full-data reference run
    # (the linear probe in head mode, full fine-tuning otherwise); 12 test examples, so a run's accuracy is k/12.
    for protocol in ("learned", "finetune"):
        assert set(loaded.metrics[protocol]) == set(SETS)
        for name, entry in loaded.metrics[protocol].items():
            assert entry["n"] == (2 if protocol == "learned" and name != "full" else 1), (protocol, name)
            if entry["n"] == 1:
                assert entry["std"] == 0.0 and entry["mean"] * 12 == pytest.approx(round(entry["mean"] * 12), abs=1e-5)
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()  # the finished artefact supersedes it
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == loaded.metrics


def test_straight_through_set_is_its_decoded_text(tiny_model_dirs, tiny_task_dir, tmp_path):
    distilled = distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run", "distill.lr_inputs=0.5"))
    from condense.models.encoders import load_encoder

    encoder = load_encoder(str(tiny_model_dirs["bert"]))
    torch.testing.assert_close(distilled.embeddings, encoder.token_embeddings[distilled.token_ids].detach())
    retokenized = encoder.tokenizer(distilled.texts, padding="max_length", max_length=8, return_tensors="pt")
    assert torch.equal(retokenized["input_ids"], distilled.token_ids)


def test_too_few_examples_per_class_fails_before_any_work(tiny_model_dirs, tiny_task_dir, tmp_path):
    with pytest.raises(DataError, match=r"50 training examples per class are needed, but class 0 \(.business.\) has 8"):
        distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run", "distill.ipc=50"))
    assert not (tmp_path / "run").exists()


def test_a_failing_evaluation_keeps_the_distilled_set(tiny_model_dirs, tiny_task_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(baselines, "learned_protocol", broken)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run"))
    assert DistilledSet.load(tmp_path / "run").num_examples == 3


def test_command_line(tiny_model_dirs, tiny_task_dir, tmp_path):
    out = tmp_path / "cli"
    overrides = [
        "task=local", f"task.path={tiny_task_dir}", f"model.name={tiny_model_dirs['bert']}", "eval=smoke",
        "distill.outer_steps=2", "distill.seq_len=8", f"out={out}",
    ]
    result = subprocess.run([sys.executable, "-m", "condense.distill", *overrides], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(json.loads((out / "metrics.json").read_text())["learned"]) == set(SETS)


def test_a_finished_distillation_is_reused_with_the_same_config(tiny_model_dirs, tiny_task_dir, tmp_path, monkeypatch):
    first = distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run"))
    label_only = pipeline.distill

    def distill_only_labels(encoder, real, start, config, **kwargs):
        if config.learn_inputs:
            pytest.fail("distilled again")
        return label_only(encoder, real, start, config, **kwargs)

    monkeypatch.setattr(pipeline, "distill", distill_only_labels)
    again = distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run", "eval.n_inits=3"))
    torch.testing.assert_close(again.embeddings, first.embeddings)
    assert again.metrics["learned"]["distilled"]["n"] == 3
    with pytest.raises(pytest.fail.Exception, match="distilled again"):
        distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run", "distill.lr_labels=0.5"))


def test_an_interrupted_evaluation_resumes_where_it_stopped(tiny_model_dirs, tiny_task_dir, tmp_path, monkeypatch):
    evaluated = []
    real_protocol = baselines.learned_protocol

    def stop_at_random(encoder, train, test, lrs, **kwargs):
        name = kwargs["desc"].split(": ")[1]
        if name == "random" and "random" not in evaluated:
            evaluated.append(name)
            raise KeyboardInterrupt
        evaluated.append(name)
        return real_protocol(encoder, train, test, lrs, **kwargs)

    monkeypatch.setattr(baselines, "learned_protocol", stop_at_random)
    with pytest.raises(KeyboardInterrupt):
        distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run"))
    assert (tmp_path / "run" / "metrics.partial.json").exists()
    finished = distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run"))
    assert evaluated == ["distilled", "decoded", "random", "random", "kcenters", "herding"]
    assert set(finished.metrics["learned"]) == set(SETS)
    assert not (tmp_path / "run" / "metrics.partial.json").exists()


def test_baselines_can_be_chosen(tiny_model_dirs, tiny_task_dir, tmp_path):
    distilled = distill_task(config(tiny_model_dirs, tiny_task_dir, tmp_path / "run", "eval.baselines=[random]"))
    assert set(distilled.metrics["learned"]) == {"distilled", "decoded", "random", "full"}
    with pytest.raises(ConfigError, match=r"eval.baselines='coreset' is not allowed; choose from \['random', 'kcenters', 'herding'\]"):
        config(tiny_model_dirs, tiny_task_dir, tmp_path / "run", "eval.baselines=[random,coreset]")
