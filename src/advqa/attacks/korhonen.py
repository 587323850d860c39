"""Korhonen & You, "Adversarial Attacks against Blind Image Quality Assessment Models", QoEVMA 2022.

``A = S(x) / max S(x);  x_{t+1} = Π_B(x_t + α · A ⊙ sign(∇J(x_t)))``

``S`` is the spatial activity of the *clean* image: the gradient magnitude
``√(S_h² + S_v²)`` of 3×3 horizontal and vertical Sobel filters of its BT.601
luma (a 1-channel image is its own luma), with the border replicated as
``scipy.ndimage.sobel`` does. Dividing by the per-image maximum puts ``A`` in
[0, 1] with 1 at the busiest pixel; a flat image (``max S = 0``) gets ``A = 1``
everywhere. Textured regions mask changes, so the perturbation goes there and
flat regions, where it would be visible, stay almost untouched.

Differences from the public benchmark's script (MSU Metrics Robustness
Benchmark, ``methods/korhonen-et-al``), which runs Adam (lr 0.005, 10 steps) on
the gradient multiplied by its map:

- Adam divides each component by its own running magnitude, which cancels the
  map's magnitude; there only its zeros and signs survive. Scaling the *step*
  (``A ⊙ sign(g)``) keeps the map's purpose.
- Its map is a single signed horizontal Sobel response normalised by the
  maximum, so wherever the response is negative the gradient is reversed;
  the magnitude of both directions cannot do that.
- It dilates the map with a 5×5 disc; this file does not.
- It has no budget; here the L∞ ball of ``eps`` (default 10/255, the
  benchmark's radius for its other attacks), 10 steps of α = 1/255, so only
  pixels with ``A = 1`` can reach the ball's surface.
"""

import torch
import torch.nn.functional as F

from advqa.attacks.base import GradientAttack, check_images

# ITU-R BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luma(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of an NCHW batch as (N, 1, H, W); 1-channel images are returned as is."""
    channels = images.shape[1]
    if channels == 1:
        return images
    if channels != 3:
        raise ValueError(f"images must have 1 or 3 channels, got {channels}")
    weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def spatial_activity(images: torch.Tensor) -> torch.Tensor:
    """The Sobel gradient magnitude of the luma divided by its per-image maximum, (N, 1, H, W).

    Parameters
    ----------
    images : torch.Tensor
        NCHW batch in [0, 1] with 1 or 3 channels.

    Returns
    -------
    torch.Tensor
        The map in [0, 1]; all ones for an image without any activity.
    """
    check_images(images)
    signal = luma(images.detach())
    smooth = signal.new_tensor([1.0, 2.0, 1.0])
    slope = signal.new_tensor([-1.0, 0.0, 1.0])
    horizontal = (smooth[:, None] * slope[None, :]).view(1, 1, 3, 3)
    vertical = horizontal.transpose(2, 3)
    # Replicating one pixel equals scipy.ndimage's default "reflect" mode for a 3×3 kernel.
    padded = F.pad(signal, (1, 1, 1, 1), mode="replicate")
    magnitude = torch.sqrt(F.conv2d(padded, horizontal) ** 2 + F.conv2d(padded, vertical) ** 2)
    peak = magnitude.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(peak > 0, magnitude / peak.clamp_min(1e-12), torch.ones_like(magnitude))


class Korhonen(GradientAttack):
    """Sign steps weighted by the clean image's spatial activity (L∞ only).

    Parameters
    ----------
    eps : float
        L∞ radius in [0, 1] units; default 10/255, the benchmark's.
    steps : int
        Number of steps; default 10, the benchmark's.
    step_size : float
        α, the step at the most active pixel; default 1/255.
    seed : int
        Unused (the attack is deterministic); kept for a uniform interface.
    budget : str, optional
        A perceptual budget, e.g. ``"advdss>=0.99"`` (:mod:`advqa.attacks.perceptual`).

    References
    ----------
    .. [1] Korhonen & You, "Adversarial Attacks against Blind Image Quality
       Assessment Models", QoEVMA 2022.
    .. [2] Antsiferova et al., "Comparing the Robustness of Modern No-Reference
       Image- and Video-Quality Metrics to Adversarial Attacks", AAAI 2024.
    """

    name = "korhonen"
    norms = ("linf",)

    def __init__(self, *, norm="linf", eps=10 / 255, steps=10, step_size=1 / 255,
                 early_stop=False, seed=0, budget=None):
        super().__init__(norm=norm, eps=eps, steps=steps, step_size=step_size,
                         random_start=False, early_stop=early_stop, seed=seed, budget=budget)

    def setup(self, images):
        # The map is fixed from the clean image, once per call; ascent() reads it.
        return {**super().setup(images), "activity": spatial_activity(images)}

    def ascent(self, gradient, state):
        return state["activity"] * gradient.sign()
