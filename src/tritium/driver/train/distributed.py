"""Distributed training under `torchrun`: the process group, this rank's device, and
the buffer synchronization DDP does not do."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from .settings import TrainError

# ----------------------------------------------------------------------------- distributed

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto") -> Dist:
        """The process group under torchrun (gloo on CPU, nccl on CUDA) and this rank's
        training device (`auto`: CUDA when available)."""
        if device not in ("auto", "cpu", "cuda"):
            raise TrainError(f"unknown device `{device}`", help="auto, cpu or cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise TrainError("--device cuda: no CUDA device is available", help="use --device cpu")
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device("cuda", local % max(1, torch.cuda.device_count())) if cuda \
            else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(dev)
        if world <= 1:
            return cls(device=dev)
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), dev)

    def sync_buffers(self, model: nn.Module) -> None:
        """BatchNorm statistics from rank 0 to every rank (DDP syncs only gradients)."""
        if self.world > 1:
            import torch.distributed as dist
            for b in model.buffers():
                dist.broadcast(b, 0)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
