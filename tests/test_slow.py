"""Real MiniLM on real AG News: the decoded text must carry the knowledge (minutes; run with -m slow)."""

import pytest
from condense.config.parsing import compose
from condense.jobs.distill_task import distill_task


@pytest.mark.slow
def test_decoded_text_beats_random_and_coresets_on_ag_news(tmp_path, monkeypatch):
    monkeypatch.delenv("CONDENSE_CACHE")  # reuse the user's feature cache: encoding AG News takes minutes
    cfg = compose("config", [
        "task=ag_news", "distill.outer_steps=200", "eval.n_inits=5", "eval.finetune.n_inits=0", f"out={tmp_path}",
    ])
    learned = distill_task(cfg).metrics["learned"]
    assert learned["decoded"]["mean"] >= 0.75
    assert learned["decoded"]["mean"] >= learned["random"]["mean"] + 0.10
    assert learned["decoded"]["mean"] > max(learned[name]["mean"] for name in ("kcenters", "herding"))
