"""MI-FGSM as the metric-robustness benchmark writes it, or as Dong et al. published it.

The two differ in one term, the gradient added to the momentum:

- ``"dong"`` (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR
  2018; advqa's :class:`advqa.attacks.MIM`): ``g_t = ν·g_{t−1} + ∇J(x_t)/‖∇J(x_t)‖₁``;
- ``"msu"`` (the MSU Metrics Robustness Benchmark's text, which cites Dong et al.,
  and its ``methods/mifgsm/run.py``): ``g_t = ∇J(x_t) + ν·g_{t−1}``, no
  normalisation;

and in both ``x_{t+1} = Clip_{x,ε}(x_t + α·sign(g_t))``.

The L1 normalisation gives every iteration the same weight in the momentum,
whatever the size of its gradient: Dong et al. add it because gradient
magnitudes differ by orders of magnitude between iterations and images. Without
it a step with a large gradient outweighs every later one: the momentum
remembers the steepest step, not the recent ones. So the two forms can give
different images from the second step on, the more so the more a metric's
gradient magnitude changes between iterations; with ν = 0 or a single step they
are the same attack.

The benchmark (:mod:`advqa.robustness.benchmark`, ``--mifgsm-form``) and this
class default to ``"dong"``, the attack the name refers to (as ``MIM``);
``"msu"`` is the option that reproduces the MSU benchmark's numbers, whose text
and code agree on the unnormalised form. The leaderboard states which ran.
"""

from __future__ import annotations

import torch

from advqa.attacks.mim import MIM

MIFGSM_FORMS = {
    "msu": "g_t = ∇J + ν·g_{t−1} (the MSU benchmark's text and code)",
    "dong": "g_t = ν·g_{t−1} + ∇J/‖∇J‖₁ (Dong et al. 2018)",
}


def check_form(form: str) -> str:
    if form not in MIFGSM_FORMS:
        raise ValueError(f"unknown MI-FGSM form {form!r}; valid: {', '.join(MIFGSM_FORMS)}")
    return form


class MIFGSM(MIM):
    """MI-FGSM with the momentum term of either form.

    Parameters
    ----------
    form : {"dong", "msu"}, default "dong"
        ``"dong"``: the gradient is L1-normalised per image before it enters
        the momentum (identical to :class:`advqa.attacks.MIM`); ``"msu"``: the
        raw gradient enters, as in the MSU benchmark's text and code.
    norm, eps, steps, step_size, decay, early_stop, seed
        As for :class:`advqa.attacks.MIM`; ``decay`` is ν.
    """

    name = "mifgsm"

    def __init__(self, *, form="dong", norm="linf", eps=8 / 255, steps=10, step_size=None,
                 decay=1.0, early_stop=False, seed=0):
        super().__init__(norm=norm, eps=eps, steps=steps, step_size=step_size, decay=decay,
                         early_stop=early_stop, seed=seed)
        self.form = check_form(form)

    def parameters(self):
        return {**super().parameters(), "form": self.form}

    def ascent(self, gradient: torch.Tensor, state: dict) -> torch.Tensor:
        if self.form == "dong":
            return super().ascent(gradient, state)
        velocity = gradient + state.get("velocity", 0.0) * self.decay
        state["velocity"] = velocity
        return self.budget.direction(velocity)
