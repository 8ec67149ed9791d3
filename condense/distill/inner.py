"""Unrolled, differentiable inner training loops: SGD, SGD with momentum, and Adam.

Each step takes the gradient with ``create_graph=True`` so the loss after T steps can be differentiated
(back-propagation through time) with respect to whatever the inner loss depends on: the synthetic inputs, the
soft labels, and the per-step learning rates. With ``create_graph=False`` the same loop is plain training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.utils.checkpoint

Params = dict[str, torch.Tensor]
Grads = list[torch.Tensor]

def _sgd(grads: Grads, state: dict[str, Grads], step: int, hyper: dict) -> Grads:
    return grads

def _momentum(grads: Grads, state: dict[str, Grads], step: int, hyper: dict) -> Grads:
    state["m"] = [g if step == 0 else hyper["momentum"] * m + g for g, m in zip(grads, state["m"] or grads)]
    return state["m"]

def _adam(grads: Grads, state: dict[str, Grads], step: int, hyper: dict) -> Grads:
    beta1, beta2 = hyper["betas"]
    eps = hyper["eps"]
    m_prev = state["m"] or [torch.zeros_like(g) for g in grads]
    v_prev = state["v"] or [torch.zeros_like(g) for g in grads]
    state["m"] = [beta1 * m + (1 - beta1) * g for m, g in zip(m_prev, grads)]
    state["v"] = [beta2 * v + (1 - beta2) * g * g for v, g in zip(v_prev, grads)]
    correction1, correction2 = 1 - beta1 ** (step + 1), 1 - beta2 ** (step + 1)
    # sqrt(v + eps^2) rather than sqrt(v) + eps: sqrt has an infinite derivative at 0, which would
    # turn the hypergradient into NaN wherever a gradient entry is exactly zero.
    return [(m / correction1) / torch.sqrt(v / correction2 + eps * eps) for m, v in zip(state["m"], state["v"])]

# The inner optimisers by their config name (distill.inner_optimizer): each maps this step's gradients, its
# running state and the step index to the update that is scaled by the step's learning rate.
UPDATES: dict[str, Callable[[Grads, dict[str, Grads], int, dict], Grads]] = {
    "sgd": _sgd, "momentum": _momentum, "adam": _adam,
}
OPTIMIZERS = tuple(UPDATES)

def unrolled_train(
    params: Params,
    loss_fn: Callable[[Params], torch.Tensor],
    lrs: torch.Tensor,
    optimizer: str = "sgd",
    *,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    create_graph: bool = True,
    checkpoint: bool = False,
) -> Params:
    """Run ``len(lrs)`` full-batch steps of ``optimizer`` on ``loss_fn`` from ``params``; returns the new params.

    ``params`` must require grad. ``lrs`` is (T,) or (T, 2): with two columns the head (``head.*``) steps with
    the first and the encoder weights with the second, since a fresh head and a pretrained encoder want
    learning rates orders of magnitude apart.

    With ``checkpoint`` each step keeps only its inputs (params, optimiser state, learning rate) and reruns its
    gradient and update during the outer backward: memory per step is one copy of the params and state instead
    of the step's whole double-backward graph, for about one more forward and backward of ``loss_fn`` per step.
    The hypergradients are the same.
    """
    if optimizer not in UPDATES:
        raise ValueError(f"inner optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    update, hyper = UPDATES[optimizer], {"momentum": momentum, "betas": betas, "eps": eps}
    names = list(params)

    def take_step(step: int, lr: torch.Tensor, params: Params, state: dict[str, Grads]) -> tuple[Params, dict]:
        # A copy, since the update replaces the state's entries: a checkpointed step reruns from its own inputs.
        state = dict(state)
        # allow_unused: weights that never reach the pooled features (e.g. BERT's pooler) get no gradient.
        grads = torch.autograd.grad(
            loss_fn(params), [params[n] for n in names], create_graph=create_graph, allow_unused=True
        )
        grads = [torch.zeros_like(params[n]) if g is None else g for n, g in zip(names, grads)]
        updates = update(grads, state, step, hyper)
        return {n: params[n] - _lr_for(n, lr) * u for n, u in zip(names, updates)}, state

    state: dict[str, Grads] = {"m": [], "v": []}
    for step, lr in enumerate(lrs):
        # The last step is kept: the outer backward starts with it, so recomputing it would save nothing.
        if checkpoint and create_graph and step < len(lrs) - 1:
            # Non-reentrant: it supports autograd.grad inside the function, and tensors that loss_fn closes
            # over (synthetic inputs, soft labels) still get their gradient, as the graph is recorded as usual.
            params, state = torch.utils.checkpoint.checkpoint(take_step, step, lr, params, state, use_reentrant=False)
        else:
            params, state = take_step(step, lr, params, state)
        if not create_graph:
            params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
            state = {k: [t.detach() for t in ts] for k, ts in state.items()}
    return params

def _lr_for(name: str, step_lrs: torch.Tensor) -> torch.Tensor:
    if step_lrs.ndim == 0:
        return step_lrs
    return step_lrs[0] if name.startswith("head.") or len(step_lrs) == 1 else step_lrs[1]
