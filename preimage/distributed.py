"""The process group that torchrun asks for, or a single process: one object that decoder training,
feature extraction and sharded inversion runs share.

Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) it opens the process group (NCCL on CUDA, each
rank on its ``LOCAL_RANK`` GPU; gloo on CPU) and closes it again if it opened it. With one process every
collective is the identity, so callers never branch on the world size.
"""
import os

import torch
import torch.distributed as dist


class Distributed:
    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0
        self.device = device
        self.opened = False
        if self.world <= 1:
            self.world = 1
            return
        if device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            self.opened = True
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    @property
    def main(self):
        """Rank 0: the process that writes shared files and prints."""
        return self.rank == 0

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        self.close(together=kind is None)

    def close(self, together=True):
        """Close the group this object opened; ``together``: first wait for every rank (a rank that tears its
        gloo connections down while a peer still uses them can abort at exit, 'terminate called ...')."""
        if self.opened:
            if together:
                dist.barrier()
            dist.destroy_process_group()
            self.opened = False

    def sum_(self, t):
        """In-place sum over ranks; returns ``t``."""
        if self.world > 1:
            dist.all_reduce(t)
        return t

    def mean(self, t):
        """The mean over ranks (a new tensor)."""
        if self.world == 1:
            return t
        t = t.clone()
        dist.all_reduce(t)
        return t / self.world

    def any(self, flag):
        """True on every rank when ``flag`` is true on any (one host sync)."""
        if self.world == 1:
            return bool(flag)
        t = torch.tensor(float(bool(flag)), device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj):
        """Every rank's picklable ``obj``, as a list in rank order (on every rank)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def wrap(self, module):
        """``module`` under DistributedDataParallel when there are several ranks (gradients averaged)."""
        if self.world == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
