"""Re-fitting the heads on the replay memory after each experience (``continual.refit``): classifier re-training
on a class-balanced memory, as in EEIL's balanced fine-tuning (Castro et al. 2018) and, taken to its limit, GDumb
(Prabhu et al. 2020), which learns from the memory alone.

After the second and every later experience, the memory holds ``memory_per_class`` examples of every class seen so
far, the one just learned included: the only class-balanced data a replay learner has. The trained blocks are
frozen and the heads take ``steps`` full-batch Adam steps on the memory's pooled features against its target rows
(a distilled set's soft labels, a real example's one-hot label; with ``targets: hard``, each row's most likely
class), from the heads as they are or from fresh ones. Training on the last task's data biases a joint head
towards that task's classes, which a few memory rows per mini-batch do not undo; the re-fit weighs every class
alike. A distilled memory was made to train a classifier from, but for the blocks as they were when it was
distilled: ``benchmarks/refit_validation.py`` measures which memories gain.

The first experience is left as trained: there is nothing to balance yet, and its accuracy right after learning
stays that of the model trained on its data, the reference that backward transfer is measured from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from condense.continual_data import collate  # first: quiets Avalanche's import
from avalanche.core import SupervisedPlugin  # noqa: E402
from avalanche.training.storage_policy import ExemplarsBuffer  # noqa: E402
from condense.continual_model import model_device  # noqa: E402
from condense.schema import RefitConfig  # noqa: E402


class MemoryRefit(SupervisedPlugin):
    """Re-fits the model's heads on ``memory`` at the end of every experience after the first. Registered after the
    ``ReplayPlugin`` that fills ``memory``, so the experience just learned has its share in it."""

    def __init__(self, memory: ExemplarsBuffer, settings: RefitConfig):
        super().__init__()
        self.memory = memory
        self.settings = settings
        self.losses: list[dict] = []  # the memory's loss before and after each re-fit

    def after_training_exp(self, strategy, *args, **kwargs):
        if strategy.experience.current_experience == 0 or not self.settings.steps:
            return
        model = strategy.model
        buffer = self.memory.buffer
        batch, targets, _ = collate([buffer[i] for i in range(len(buffer))])
        device = model_device(model)
        batch, targets = batch.to(device), targets.to(device)
        if self.settings.targets == "hard":
            targets = F.one_hot(targets.argmax(1), targets.shape[1]).to(targets.dtype)
        training = model.training
        model.eval()  # no dropout: the blocks are frozen here, and their features computed once
        with torch.no_grad():
            features = model.features(batch)
        if self.settings.start == "fresh":
            for head in model.heads:
                head.reset_parameters()  # torch's generator, seeded per run: the same fresh heads for a seed
        optimizer = torch.optim.Adam(model.heads.parameters(), lr=self.settings.lr)

        def memory_loss() -> torch.Tensor:
            return F.cross_entropy(model.classify(features, batch["task_ids"]), targets)

        with torch.no_grad():
            before = float(memory_loss())
        for _ in range(self.settings.steps):
            loss = memory_loss()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            after = float(memory_loss())
        self.losses.append({"experience": strategy.experience.current_experience, "before": before, "after": after})
        model.train(training)
