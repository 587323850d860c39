"""AEQA: overall quality of an adversarial example, perceptual quality × attack intensity.

Paper: the AdvDSS/AEQA paper (ACM MM 2024), section 4.2, Eq. 8–10.

- Attack intensity ``D_JS``: the Jensen–Shannon divergence between the
  classifier's softmax outputs on the clean image and on the AE, in base 2 so
  that it lies in [0, 1], with 0·log 0 = 0.
- ``AEQA = D_JS^α · AdvDSS^(1−α)`` with the dynamic weight
  ``α = 1 / (1 + β1 · D_JS^β2)``, β1 = 0.8 and β2 = 0.1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from advqa.quality.advdss import advdss, safe_power
from advqa.quality.validate import check_pair


def js_divergence(logits_reference: torch.Tensor, logits_adversarial: torch.Tensor) -> torch.Tensor:
    """Per-sample Jensen–Shannon divergence (base 2, in [0, 1]) of the two softmaxes.

    Parameters
    ----------
    logits_reference, logits_adversarial : torch.Tensor
        (N, K) logits of the clean images and of the AEs.

    Returns
    -------
    torch.Tensor
        Shape (N,), differentiable.
    """
    if logits_reference.shape != logits_adversarial.shape or logits_reference.dim() != 2:
        raise ValueError(f"logits must both be (N, K), got {tuple(logits_reference.shape)} "
                         f"and {tuple(logits_adversarial.shape)}")
    log_p = F.log_softmax(logits_reference, dim=1)
    log_q = F.log_softmax(logits_adversarial, dim=1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2)
    # p · (log p − log m) is exactly 0 where p underflows, which is 0·log 0 = 0.
    kl_p = (log_p.exp() * (log_p - log_m)).sum(dim=1)
    kl_q = (log_q.exp() * (log_q - log_m)).sum(dim=1)
    return ((kl_p + kl_q) / (2 * math.log(2))).clamp(0, 1)


def aeqa(js: torch.Tensor, advdss_score: torch.Tensor, *, beta1: float = 0.8,
         beta2: float = 0.1) -> torch.Tensor:
    """``js^α · advdss^(1−α)`` with ``α = 1/(1 + β1·js^β2)``; higher is a better AE.

    Parameters
    ----------
    js : torch.Tensor
        Attack intensity, :func:`js_divergence`, shape (N,).
    advdss_score : torch.Tensor
        Perceptual quality, :func:`advqa.quality.advdss`, shape (N,).
    beta1, beta2 : float
        The dynamic weight's constants (paper: 0.8 and 0.1).
    """
    alpha = 1 / (1 + beta1 * safe_power(js, beta2))
    # A zero base gives 0 (and a zero gradient): js = 0 is no attack at all, and
    # advdss = 0 is no remaining structure.
    return tensor_power(js, alpha) * tensor_power(advdss_score, 1 - alpha)


def tensor_power(base: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    positive = base > 0
    return torch.where(positive, torch.where(positive, base, 1.0) ** exponent, 0.0)


def aeqa_scores(model, reference: torch.Tensor, distorted: torch.Tensor, *,
                data_range: float = 1.0, beta1: float = 0.8, beta2: float = 0.1,
                **advdss_options) -> dict[str, torch.Tensor]:
    """Score (reference, AE) batches on ``model`` in one call: js, advdss and aeqa, each (N,).

    ``model`` maps images in [0, data_range] (as given) to logits.
    """
    quality = advdss(reference=reference, distorted=distorted, data_range=data_range,
                     **advdss_options)
    with torch.no_grad():
        logits_reference = model(reference)
    js = js_divergence(logits_reference, model(distorted))
    return {"js": js, "advdss": quality, "aeqa": aeqa(js, quality, beta1=beta1, beta2=beta2)}


def aeqa_metric(reference: torch.Tensor, distorted: torch.Tensor, *, model,
                data_range: float = 1.0, **options) -> torch.Tensor:
    """AEQA as a registry metric: ``get_metric("aeqa", model=classifier)``."""
    return aeqa_scores(model, reference, distorted, data_range=data_range, **options)["aeqa"]


def js_metric(reference: torch.Tensor, distorted: torch.Tensor, *, model,
              data_range: float = 1.0) -> torch.Tensor:
    """Attack intensity as a registry metric: ``get_metric("js", model=classifier)``."""
    reference, distorted = check_pair(reference, distorted, data_range=data_range)
    with torch.no_grad():
        logits_reference = model(reference)
    return js_divergence(logits_reference, model(distorted))
