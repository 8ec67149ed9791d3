"""What the strategies add to Avalanche's templates besides a memory: plugins that measure a run (the forgetting
curve, how well the model already fits its memory), those that change how replay learns (a dark-experience-replay
term, the heads' re-fit on the memory), and the learned loop a super-dataset is trained by.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from condense.continual.data import Examples, LabelLayout, collate  # first: quiets Avalanche's import
from avalanche.core import SupervisedPlugin  # noqa: E402
from avalanche.training.storage_policy import ExemplarsBuffer  # noqa: E402

from condense.continual.model import OUTSIDE_TASK, accuracy, loss_and_accuracy, model_device  # noqa: E402
from condense.config.schema import MemoryLossConfig, RefitConfig  # noqa: E402


class AccuracyCurve(SupervisedPlugin):
    """Accuracy on a small held-out sample of every task, at the start and end of each experience and every
    ``every`` training iterations in between: the forgetting curves."""

    def __init__(self, curve: list[Examples], every: int):
        super().__init__()
        self.curve = curve
        self.every = max(1, every)
        self.points: list[dict] = []
        self.experience_starts: list[int] = []

    def _record(self, strategy) -> None:
        iteration = strategy.clock.train_iterations
        if self.points and self.points[-1]["iteration"] == iteration:
            return
        self.points.append({
            "iteration": iteration,
            "experience": strategy.clock.train_exp_counter,
            "accuracy": [accuracy(strategy.model, examples) for examples in self.curve],
        })

    def before_training_exp(self, strategy, *args, **kwargs):
        self.experience_starts.append(strategy.clock.train_iterations)
        self._record(strategy)

    def after_training_iteration(self, strategy, *args, **kwargs):
        if strategy.clock.train_iterations % self.every == 0:
            self._record(strategy)

    def after_training_exp(self, strategy, *args, **kwargs):
        self._record(strategy)


def memory_rows(memory: ExemplarsBuffer) -> list:
    """Every ``(inputs, target, task label)`` row the memory holds now."""
    return [memory.buffer[i] for i in range(len(memory.buffer))]


class MemoryFit(SupervisedPlugin):
    """How well the model already fits the replay memory when a new task starts: an example the model fits with
    near-zero loss gives replay almost no gradient, however informative it was to learn from."""

    def __init__(self, memory: ExemplarsBuffer):
        super().__init__()
        self.memory = memory
        self.fits: list[dict] = []

    def after_training_exp(self, strategy, *args, **kwargs):
        # Registered after the ReplayPlugin, so the memory already holds the experience just finished.
        rows = memory_rows(self.memory)
        loss, fit = loss_and_accuracy(strategy.model, rows)
        self.fits.append({"examples": len(rows), "loss": loss, "accuracy": fit})


class MemoryLoss(SupervisedPlugin):
    """Dark experience replay (Buzzega et al. 2020, ``continual.memory_loss``), with a KL divergence in place of its
    logit MSE: adds ``weight * T^2 * KL(softmax(stored / T) || softmax(logits / T))`` on a mini-batch drawn from the
    memory to every training loss, where ``stored`` are the logits the model gave each row when it entered the memory.
    The memory rows mixed into every mini-batch already give a cross-entropy, a near-zero one once the model fits
    them; this term keeps the model's answers on them where they were before the drift moves them.

    Registered after the ``ReplayPlugin`` that fills ``memory``, so each experience's new rows get their logits
    after the memory holds them, from the model as the experience ended."""

    def __init__(self, memory: ExemplarsBuffer, settings: MemoryLossConfig):
        super().__init__()
        self.memory = memory
        self.settings = settings
        self.logits = torch.empty(0)  # (rows so far, width): the model's logits on each row as it was stored

    @torch.no_grad()
    def after_training_exp(self, strategy, *args, **kwargs):
        buffer = self.memory.buffer
        new = [buffer[i] for i in range(len(self.logits), len(buffer))]
        if not new:
            return
        training = strategy.model.training
        strategy.model.eval()
        batch, _, _ = collate(new)
        logits = strategy.model(batch.to(model_device(strategy.model))).float().cpu()
        strategy.model.train(training)
        self.logits = logits if not len(self.logits) else torch.cat([self.logits, logits])

    def before_backward(self, strategy, *args, **kwargs):
        buffer = self.memory.buffer
        if not len(buffer):
            return
        # torch's global generator: RNGManager seeds it per run, so the draws repeat with the seed.
        picks = torch.randint(len(buffer), (self.settings.batch_size,)).tolist()
        batch, _, _ = collate([buffer[i] for i in picks])
        device = model_device(strategy.model)
        logits = strategy.model(batch.to(device))
        temperature = self.settings.temperature
        wanted = (self.logits[picks].to(device) / temperature).softmax(1)
        divergence = F.kl_div((logits / temperature).log_softmax(1), wanted, reduction="batchmean")
        strategy.loss = strategy.loss + self.settings.weight * temperature**2 * divergence


class AsymmetricLoss(SupervisedPlugin):
    """ER-ACE's asymmetric cross-entropy (Caccia et al. 2022, ``continual.asymmetric_loss``): rows of the task being
    learned are scored over that task's classes only, replayed rows over every class. In the class scenario, plain
    cross-entropy on new rows pushes every old class's logit down, which a memory of a few rows cannot outweigh;
    with per-task heads the two losses are the same. Replaces the template's loss, so it is registered before any
    plugin that adds to it (:class:`MemoryLoss`)."""

    def __init__(self, layout: LabelLayout):
        super().__init__()
        self.layout = layout

    def before_backward(self, strategy, *args, **kwargs):
        task = strategy.experience.current_experience
        logits = strategy.mb_output
        incoming = (strategy.mbatch[0]["task_ids"] == task).unsqueeze(1)
        columns = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        columns[self.layout.offset(task) : self.layout.offset(task) + self.layout.num_classes[task]] = True
        masked = logits.masked_fill(incoming & ~columns, OUTSIDE_TASK)
        strategy.loss = F.cross_entropy(masked, strategy.mb_y)


class MemoryRefit(SupervisedPlugin):
    """Re-fits the heads on the class-balanced replay memory at the end of every experience after the first
    (``continual.refit``), as EEIL's balanced fine-tuning (Castro et al. 2018) does.

    After the second and every later experience the memory holds ``memory_per_class`` examples of every class seen
    so far, the one just learned included: the only class-balanced data a replay learner has. Training on the last
    task's data biases a joint head towards its classes, which a few memory rows per mini-batch do not undo. The
    trained blocks stay frozen; the heads, as the experience left them, take ``steps`` full-batch Adam steps on the
    memory's pooled features against each row's most likely class (a distilled row's soft label made hard: fitting
    the soft labels themselves lost on held-out rows, ``docs/results/experimental.md``). The first experience is left
    as trained: its accuracy right after learning is the reference that backward transfer is measured from.

    Registered after the ``ReplayPlugin`` that fills ``memory``, so the experience just learned has its share in it."""

    def __init__(self, memory: ExemplarsBuffer, settings: RefitConfig):
        super().__init__()
        self.memory = memory
        self.settings = settings
        self.losses: list[dict] = []  # the memory's loss before and after each re-fit

    def after_training_exp(self, strategy, *args, **kwargs):
        if strategy.experience.current_experience == 0:
            return
        model = strategy.model
        batch, targets, _ = collate(memory_rows(self.memory))
        device = model_device(model)
        batch = batch.to(device)
        classes = targets.argmax(1).to(device)
        training = model.training
        model.eval()  # no dropout: the blocks are frozen here, and their features computed once
        with torch.no_grad():
            features = model.features(batch)
        optimizer = torch.optim.Adam(model.heads.parameters(), lr=self.settings.lr)

        def memory_loss() -> torch.Tensor:
            return F.cross_entropy(model.classify(features, batch["task_ids"]), classes)

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


class LearnedSteps(SupervisedPlugin):
    """The loop a distilled set was distilled for: each training iteration is one full-batch step of plain SGD at that
    step's learned learning rates (the head's and the encoder's) on the loss it was distilled with: one mean
    cross-entropy over every row (a set distilled as one, the super-dataset), or with ``per_task_loss`` the sum over
    tasks of each task's mean (sets distilled each on its own task, then merged). Avalanche keeps one parameter
    group, so the learning rates scale the gradients of an SGD at lr 1."""

    def __init__(self, lrs: torch.Tensor, per_task_loss: bool = False):
        super().__init__()
        self.per_task_loss = per_task_loss
        # One column: a set distilled with the encoder frozen (distill=head), whose loop never stepped the encoder.
        self.lrs = lrs if lrs.ndim == 2 else torch.stack([lrs, torch.zeros_like(lrs)], dim=1)

    def before_training_exp(self, strategy, *args, **kwargs):
        strategy.model.eval()  # no dropout, as in the unrolled loop the set was distilled through
        # Avalanche's loader for task-labelled data draws a share of each batch from every task and oversamples the
        # smaller ones, which would repeat rows; the learned loop sees every row once per step.
        dataset = strategy.adapted_dataset
        strategy.dataloader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset), collate_fn=collate)

    def before_backward(self, strategy, *args, **kwargs):
        if self.per_task_loss:
            tasks = strategy.mbatch[0]["task_ids"]
            strategy.loss = sum(F.cross_entropy(strategy.mb_output[tasks == task], strategy.mb_y[tasks == task])
                                for task in tasks.unique())

    def before_update(self, strategy, *args, **kwargs):
        head_lr, encoder_lr = self.lrs[strategy.clock.train_exp_iterations].tolist()
        for name, parameter in strategy.model.named_parameters():
            if parameter.grad is not None:
                parameter.grad.mul_(head_lr if name.startswith("heads.") else encoder_lr)
