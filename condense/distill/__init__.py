"""The BPTT core: a synthetic set learned by back-propagating a real-data loss through unrolled inner training.

* :mod:`.synthetic`: the learned tensors in one object (:class:`~.synthetic.SyntheticSet`);
* :mod:`.loop`: the outer loop, :func:`~.loop.distill`;
* :mod:`.inner`: differentiable unrolled SGD, momentum and Adam;
* :mod:`.objective`: the loss a model minimises on a set (soft labels, attention labels);
* :mod:`.start`: the real-token sets distillation starts from;
* :mod:`.decode`: nearest-token decoding and the straight-through projection;
* :mod:`.checkpoint`: the outer loop's whole state on disk.

``python -m condense.distill`` (:mod:`.__main__`) is the command that distils one task; this package imports nothing
heavy, so a bad command line fails before torch loads.
"""

from importlib import import_module

# Resolved on first use, so that ``python -m condense.distill`` checks its config before loading torch's stack.
_EXPORTS = {"distill": "condense.distill.loop", "RealData": "condense.distill.loop", "SyntheticSet": "condense.distill.synthetic",
            "initial_set": "condense.distill.start", "real_examples_set": "condense.distill.start"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'condense.distill' has no attribute {name!r}")
