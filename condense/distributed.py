"""One distillation across several processes: the process group, and the few collectives the outer loop needs.

Started by ``torchrun --nproc_per_node=N -m condense.distill ...`` (or ``srun`` with ``MASTER_ADDR`` and
``MASTER_PORT`` set), every process runs the same outer loop with the same random draws: the same fresh heads, the
same real-batch indices, the same synthetic set. Each process measures the real loss on its share of the batch
(:func:`shard`, divided by the whole batch's size), the gradients of the synthetic set are summed across processes
(:func:`sum_gradients`), and every process takes the same outer step: the run ends with the tensors one process
would make, up to the order of a floating-point sum. Only the main process (rank 0) writes artefacts, checkpoints
and logs.

Without those environment variables (or with one process) nothing here starts a process group and every function
is the single-process identity.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the process's index on its machine: its GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> World:
    """The world the launcher describes in the environment: torchrun's RANK / WORLD_SIZE / LOCAL_RANK, else SLURM's
    SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID when ``srun`` started several tasks; one process otherwise."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env and "MASTER_ADDR" in env:
        return World(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return World()


def init(device: torch.device) -> tuple[World, torch.device]:
    """Join the launcher's process group (gloo on CPUs, NCCL on GPUs) and return this process's world and device:
    with several processes, ``cuda`` becomes the process's own GPU (``cuda:LOCAL_RANK``). Idempotent."""
    world = launched()
    if world.size == 1:
        return world, device
    if device.type == "cuda":
        if device.index not in (None, world.local_rank):
            raise ValueError(f"device={device}: under a launcher of {world.size} processes each process takes "
                             f"cuda:LOCAL_RANK; give device=cuda")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        env = os.environ
        env.setdefault("RANK", str(world.rank))  # srun: the names init_process_group's env:// reads
        env.setdefault("WORLD_SIZE", str(world.size))
        env.setdefault("MASTER_PORT", "29500")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)
        atexit.register(_destroy)  # no barrier: after an error the other processes may never reach one
        if not world.is_main:  # one log for the run: the other processes report only warnings and errors
            logging.getLogger().setLevel(logging.WARNING)
        log.info("one distillation across %d processes (%s backend)", world.size, dist.get_backend())
    return world, device


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def leave() -> None:
    """Wait for every process, then leave the process group: what follows runs in each process alone (the main
    process evaluates the set with single-process distillations of its baselines)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def world() -> World:
    """This process's world: the process group's when one was joined (:func:`init`), else a single process."""
    if not dist.is_initialized():
        return World()
    return World(dist.get_rank(), dist.get_world_size(), launched().local_rank)


def shard(index: torch.Tensor) -> torch.Tensor:
    """This process's contiguous share of ``index`` (shares differ in size by at most one)."""
    here = world()
    return index.tensor_split(here.size)[here.rank]


def sum_gradients(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor's ``.grad`` by its sum over the processes (no gradient counts as zeros)."""
    if world().size == 1:
        return
    for tensor in tensors:
        if tensor.grad is None:
            tensor.grad = torch.zeros_like(tensor)
        dist.all_reduce(tensor.grad)


def total(value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` over the processes (a copy)."""
    value = value.detach().clone()
    if world().size > 1:
        dist.all_reduce(value)
    return value


def from_main(value):
    """The main process's ``value`` (any picklable object), on every process."""
    if world().size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world().size > 1:
        dist.barrier()
