"""One attack engine for every gradient attack in advqa.

>>> attack = get_attack("pgd", norm="linf", eps=4/255, steps=10, step_size=1/255,
...                     random_start=False)
>>> adversarial = attack(model, images, labels)          # doctest: +SKIP
>>> result = attack.run(model, images, labels)           # doctest: +SKIP
>>> adversarial, steps = attack.perturb(objective, images)  # any objective  # doctest: +SKIP
"""

from __future__ import annotations

import inspect

from advqa.attacks.base import Attack, AttackResult, GradientAttack, check_images
from advqa.attacks.bim import BIM
from advqa.attacks.budgets import NORMS, Budget, distances, make_budget, scale_note
from advqa.attacks.cw import CarliniWagner
from advqa.attacks.deepfool import DeepFool
from advqa.attacks.fgsm import FGSM
from advqa.attacks.korhonen import Korhonen
from advqa.attacks.lagrangian import Lagrangian
from advqa.attacks.lbfgs import LBFGS
from advqa.attacks.madc import MADC
from advqa.attacks.mim import MIM
from advqa.attacks.objectives import ClassifierObjective, Evaluation, Objective
from advqa.attacks.perceptual import BudgetError, MetricBudget, budget_metrics, parse_budget
from advqa.attacks.pgd import PGD

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM, "bim": BIM, "pgd": PGD, "mim": MIM, "deepfool": DeepFool, "cw": CarliniWagner,
    "lbfgs": LBFGS, "korhonen": Korhonen, "madc": MADC, "alma": Lagrangian,
}
ALIASES = {"i-fgsm": "bim", "ifgsm": "bim", "mi-fgsm": "mim", "mifgsm": "mim",
           "cw-l2": "cw", "carlini-wagner": "cw", "c&w": "cw", "lagrangian": "alma"}


class UnknownAttackError(KeyError):
    """An attack name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


def list_attacks() -> list[str]:
    return list(ATTACKS)


def attack_class(name: str) -> type[Attack]:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in ATTACKS:
        raise UnknownAttackError(
            f"unknown attack {name!r}; valid names: {', '.join(ATTACKS)} "
            f"(aliases: {', '.join(ALIASES)})")
    return ATTACKS[key]


def get_attack(name: str, **parameters) -> Attack:
    """Build an attack by name with keyword parameters.

    Raises
    ------
    UnknownAttackError
        For an unknown name; the message lists the valid ones.
    ValueError
        For an unknown parameter or an out-of-range value.
    """
    cls = attack_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    if "budget" in parameters and "budget" not in accepted:
        takers = ", ".join(n for n, c in ATTACKS.items()
                           if "budget" in inspect.signature(c.__init__).parameters)
        raise ValueError(
            f"{cls.name} does not take a perceptual budget: budget= bounds the projected-"
            f"gradient attacks ({takers}); for the least visible AE under a metric use "
            "'alma' with metric=")
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        valid = ", ".join(p for p in accepted if p != "self")
        raise ValueError(
            f"{cls.name} does not take {', '.join(unknown)}; valid parameters: {valid}")
    return cls(**parameters)


__all__ = [
    "ATTACKS",
    "BIM",
    "FGSM",
    "LBFGS",
    "MADC",
    "MIM",
    "NORMS",
    "PGD",
    "Attack",
    "AttackResult",
    "Budget",
    "BudgetError",
    "CarliniWagner",
    "ClassifierObjective",
    "DeepFool",
    "Evaluation",
    "GradientAttack",
    "Korhonen",
    "Lagrangian",
    "MetricBudget",
    "Objective",
    "UnknownAttackError",
    "attack_class",
    "budget_metrics",
    "check_images",
    "distances",
    "get_attack",
    "list_attacks",
    "make_budget",
    "parse_budget",
    "scale_note",
]
