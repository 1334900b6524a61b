"""Several processes (``accelerate launch``): contrastive losses see the global batch."""
from __future__ import annotations

import torch


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (batch, ...) over all processes -> (world · batch, ...); the local
    slice keeps its gradient, the others are constants (open_clip's ``gather_features``).
    Identity when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def world_size() -> int:
    """Processes in the group (1 when not distributed)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank_offset(n_local: int) -> int:
    """Where this process's ``n_local`` rows start in a gathered batch (0 when not distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() * n_local
    return 0
