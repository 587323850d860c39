"""Attack grids: which attacks, norms and strengths a dataset build runs.

The default is Table 2 of the AdvDSS/AEQA paper (AdvDB): five attacks, each
over L0, L2 and L∞ and five strengths. The paper gives ε lists per attack,
the same for every norm; we keep them as published. What ε means per norm is
defined in :mod:`advqa.attacks.budgets` (for L0 it is a fraction of pixels).
DeepFool has no L0 form (its sparse relative is SparseFool), so it runs over
L2 and L∞ only.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from advqa.attacks import attack_class, get_attack

# Table 2 of the AdvDSS/AEQA paper: attack → strength values.
TABLE2 = {
    "pgd": [0.003, 0.03, 0.1, 0.4, 1.4],
    "fgsm": [0.002, 0.03, 0.06, 0.14, 0.4],
    "bim": [0.003, 0.03, 0.06, 0.15, 0.3],
    "mim": [0.005, 0.03, 0.06, 0.19, 0.6],
    "deepfool": [0.25, 1.0, 3.5, 36, 500],
}
TABLE2_NORMS = ("l0", "l2", "linf")
# C&W is in the QoMEX 2019 database (the dataset README) but not in Table 2.
CW_KAPPAS = [0.0, 5.0, 20.0]


@dataclass(frozen=True)
class AttackSpec:
    """One cell of a grid: an attack, a norm, a strength and fixed settings."""

    attack: str
    norm: str
    strength: float
    settings: dict = field(default_factory=dict, hash=False)

    @property
    def strength_name(self) -> str:
        return attack_class(self.attack).strength

    def parameters(self) -> dict:
        return {"norm": self.norm, self.strength_name: self.strength, **self.settings}

    def build(self, *, seed: int = 0):
        return get_attack(self.attack, seed=seed, **self.parameters())

    def label(self) -> str:
        return f"{self.attack}-{self.norm}-{self.strength_name}{self.strength:g}"

    def describe(self) -> dict:
        return {"attack": self.attack, **self.build().parameters()}


def expand(attack: str, norms, strengths, **settings) -> list[AttackSpec]:
    cls = attack_class(attack)
    usable = [norm for norm in norms if norm in cls.norms]
    return [AttackSpec(cls.name, norm, float(value), dict(settings))
            for norm in usable for value in strengths]


def table2_grid(*, steps: int = 10) -> list[AttackSpec]:
    """The paper's Table 2: 5 attacks × (L0, L2, L∞) × 5 strengths (DeepFool: L2, L∞)."""
    grid = []
    for attack, strengths in TABLE2.items():
        settings = {} if attack in ("fgsm", "deepfool") else {"steps": steps}
        grid += expand(attack, TABLE2_NORMS, strengths, **settings)
    return grid


def full_grid(*, steps: int = 10) -> list[AttackSpec]:
    """Table 2 plus C&W L2 at three confidence margins."""
    return table2_grid(steps=steps) + expand("cw", ["l2"], CW_KAPPAS)


def demo_grid() -> list[AttackSpec]:
    """A reduced grid for a ~5 minute CPU run: L2 and L∞; Table 2's first, second and last
    strengths (the second is ε = 0.03 for every ε-attack, a shared budget to compare at).

    C&W runs once with a short schedule so that every attack family appears.
    """
    grid = []
    for attack, strengths in TABLE2.items():
        settings = {} if attack in ("fgsm", "deepfool") else {"steps": 10}
        chosen = [strengths[0], strengths[1], strengths[-1]]
        grid += expand(attack, ("l2", "linf"), chosen, **settings)
    return grid + expand("cw", ["l2"], [0.0], steps=40, binary_search_steps=2)


def grid_from_options(attacks, norms, strengths, **settings) -> list[AttackSpec]:
    """The product attacks × norms × strengths; norms an attack lacks are skipped."""
    grid = []
    for attack in attacks:
        grid += expand(attack, norms, strengths, **settings)
    if not grid:
        raise ValueError(f"no attack in {list(attacks)} supports any norm in {list(norms)}")
    return grid


def load_grid(path: str | Path) -> list[AttackSpec]:
    """Read a grid from TOML or JSON.

    Each ``[[attack]]`` table (JSON: each item of the ``"attack"`` list) has a
    ``name``, a list of ``norms``, a list under the attack's strength name
    (``eps``, ``overshoot`` or ``kappa``) and any other fixed settings::

        [[attack]]
        name = "pgd"
        norms = ["linf", "l2"]
        eps = [0.003, 0.03]
        steps = 20
    """
    path = Path(path)
    text = path.read_text()
    try:
        document = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"cannot parse grid file {path}: {error}") from error
    grid = []
    for index, entry in enumerate(document.get("attack", [])):
        entry = dict(entry)
        try:
            cls = attack_class(entry.pop("name"))
            norms = entry.pop("norms", [cls.norms[0]])
            strengths = entry.pop(cls.strength)
        except KeyError as error:
            raise ValueError(f"{path}: attack entry {index + 1} lacks {error}") from error
        specs = expand(cls.name, norms, strengths, **entry)
        for spec in specs:
            spec.build()  # reject bad settings now, not hours into a run
        grid += specs
    if not grid:
        raise ValueError(f"{path} defines no attacks (expected [[attack]] tables)")
    return grid
