"""Per-sample Lp distances between two image batches, shared by attacks and metrics."""

from __future__ import annotations

import torch


def flat(tensor: torch.Tensor) -> torch.Tensor:
    """(N, ...) → (N, D)."""
    return tensor.reshape(tensor.shape[0], -1)


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape (N,) to broadcast against an (N, ...) tensor."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def distances(images: torch.Tensor, others: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample L0, L1, L2 and L∞ of ``others − images``.

    L0 counts changed *pixel positions* of NCHW input (a pixel whose channels
    change counts once); L1, L2 and L∞ run over every component.
    """
    if images.shape != others.shape:
        raise ValueError(f"cannot compare images of shape {tuple(images.shape)} with "
                         f"images of shape {tuple(others.shape)}")
    delta = others - images
    changed = (delta.abs().sum(dim=1) > 0) if delta.dim() == 4 else delta != 0
    return {
        "l0": flat(changed).sum(dim=1),
        "l1": flat(delta).abs().sum(dim=1),
        "l2": flat(delta).norm(p=2, dim=1),
        "linf": flat(delta).abs().amax(dim=1),
    }
