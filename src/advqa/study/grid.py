"""Attack grids: which attacks, norms and strengths a dataset build runs.

The default is Table 2 of the AdvDSS/AEQA paper (AdvDB): five attacks, each
over L0, L2 and L∞ and five strengths. The paper gives ε lists per attack,
the same for every norm; we keep them as published. What ε means per norm is
defined in :mod:`advqa.attacks.budgets` (for L0 it is a fraction of pixels).
DeepFool has no L0 form (its sparse relative is SparseFool), so it runs over
L2 and L∞ only.

A cell's identity (:meth:`AttackSpec.key`) hashes every setting that changes
its pixels, defaults included, so two cells that differ only in ``steps`` or
``step_size`` never share an AE id, and a grid may not hold the same cell twice.

A perceptual budget (``budget = "advdss>=0.99"``, :mod:`advqa.attacks.perceptual`)
is one more setting of a projected-gradient cell: grid files take it per
``[[attack]]`` and ``advqa build --budget`` adds it to every cell that can take it
(:func:`with_budget`). It enters the cell's key and, filename-safe
(``advdss-ge0.99``), its label.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from advqa.attacks import NORMS, GradientAttack, attack_class, get_attack, parse_budget

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

# Settings a cell's ``settings`` may not hold: they are the cell's own fields or the
# study's (the seed), and letting them through would run one thing and record another.
RESERVED = ("name", "norm", "norms", "seed")


class GridError(ValueError):
    """A grid that cannot be run as written; the message says where and what to change."""


@dataclass(frozen=True)
class AttackSpec:
    """One cell of a grid: an attack, a norm, a strength and fixed settings."""

    attack: str
    norm: str
    strength: float
    settings: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        cls = attack_class(self.attack)
        check_grid_attack(cls)
        if self.norm not in NORMS:
            raise GridError(f"unknown norm {self.norm!r}; valid norms: {', '.join(NORMS)}")
        if self.norm not in cls.norms:
            raise GridError(f"{cls.name} supports norms {', '.join(cls.norms)}, "
                            f"not {self.norm!r}")
        clash = sorted(set(self.settings) & {*RESERVED, cls.strength})
        if clash:
            raise GridError(f"settings of a {cls.name} cell may not set {', '.join(clash)}: "
                            "the norm and strength are the cell's own fields")

    @property
    def strength_name(self) -> str:
        return attack_class(self.attack).strength

    def parameters(self) -> dict:
        return {"norm": self.norm, self.strength_name: self.strength, **self.settings}

    def build(self, *, seed: int = 0):
        return get_attack(self.attack, seed=seed, **self.parameters())

    def label(self) -> str:
        label = f"{self.attack}-{self.norm}-{self.strength_name}{self.strength:g}"
        if self.settings.get("budget") is None:
            return label
        budget = parse_budget(self.settings["budget"])
        comparison = "ge" if budget.operator == ">=" else "le"
        return f"{label}-{budget.info.name}-{comparison}{budget.threshold:g}"

    def describe(self) -> dict:
        """Every setting of the attack as it runs, defaults included."""
        return {"attack": self.attack, **self.build().parameters()}

    def key(self) -> str:
        """8 hex digits identifying the cell: a hash of :meth:`describe`."""
        payload = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:8]

    def identifier(self) -> str:
        """The readable label plus the key, e.g. ``pgd-linf-eps0.03-1a2b3c4d``."""
        return f"{self.label()}-{self.key()}"


def check_grid_attack(cls) -> None:
    """Refuse an attack that has no norm to sweep (ALMA): it is no grid cell."""
    if not cls.norms:
        raise GridError(f"{cls.name} has no norm and no strength to sweep, so it is no grid "
                        "cell; run it with `advqa attack` or get_attack()")


def takes_budget(attack: str) -> bool:
    """Whether the attack takes a perceptual budget (the projected-gradient attacks)."""
    return "budget" in inspect.signature(attack_class(attack)).parameters


def with_budget(grid: list[AttackSpec], budget: str) -> list[AttackSpec]:
    """Every cell that can take a perceptual budget, with ``budget`` added.

    Cells of attacks without one (DeepFool, C&W) are left out with a warning: a
    budgeted grid promises that each of its AEs meets the budget.

    Raises
    ------
    GridError
        For a bad budget, a cell that already has one, or a grid with no cell that
        takes a budget.
    """
    try:
        text = str(parse_budget(budget))
    except ValueError as error:
        raise GridError(f"--budget: {error}") from error
    kept = [spec for spec in grid if takes_budget(spec.attack)]
    if not kept:
        raise GridError(f"--budget {text}: no attack of the grid takes a perceptual budget "
                        "(only the projected-gradient attacks fgsm, bim, pgd, mim, korhonen do)")
    dropped = sorted({spec.attack for spec in grid} - {spec.attack for spec in kept})
    if dropped:
        warnings.warn(f"--budget {text}: {', '.join(dropped)} take no perceptual budget; "
                      "their cells are left out", stacklevel=2)
    if any("budget" in spec.settings for spec in kept):
        raise GridError("--budget: a cell of the grid already has a budget")
    return [AttackSpec(spec.attack, spec.norm, spec.strength, {**spec.settings, "budget": text})
            for spec in kept]


def check_unique(grid: list[AttackSpec], where: list[str] | None = None,
                 source: str = "the grid") -> None:
    """Refuse a grid that holds one cell twice; ``where`` names each cell's origin."""
    seen: dict[str, int] = {}
    for index, spec in enumerate(grid):
        first = seen.setdefault(spec.key(), index)
        if first != index:
            origin = where or [f"cell {i + 1}" for i in range(len(grid))]
            raise GridError(f"{source} holds {spec.label()} twice ({origin[first]} and "
                            f"{origin[index]}) with the same settings; remove one")


def expand(attack: str, norms, strengths, **settings) -> list[AttackSpec]:
    """Every (norm, strength) cell of one attack; each is built once to check its settings."""
    cls = attack_class(attack)
    specs = [AttackSpec(cls.name, norm, float(value), dict(settings))
             for norm in norms for value in strengths]
    for spec in specs:
        spec.build()  # reject bad settings now, not hours into a run
    return specs


def takes_steps(attack: str) -> bool:
    """Whether ``steps`` is an iteration count of this attack's gradient loop."""
    cls = attack_class(attack)
    return issubclass(cls, GradientAttack) and "steps" in inspect.signature(cls).parameters


def table2_grid(*, steps: int = 10) -> list[AttackSpec]:
    """The paper's Table 2: 5 attacks × (L0, L2, L∞) × 5 strengths (DeepFool: L2, L∞)."""
    grid = []
    for attack, strengths in TABLE2.items():
        settings = {"steps": steps} if takes_steps(attack) else {}
        norms = [norm for norm in TABLE2_NORMS if norm in attack_class(attack).norms]
        grid += expand(attack, norms, strengths, **settings)
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
        settings = {"steps": 10} if takes_steps(attack) else {}
        chosen = [strengths[0], strengths[1], strengths[-1]]
        grid += expand(attack, ("l2", "linf"), chosen, **settings)
    return grid + expand("cw", ["l2"], [0.0], steps=40, binary_search_steps=2)


def grid_from_options(attacks, norms, strengths, **settings) -> list[AttackSpec]:
    """The product attacks × norms × strengths.

    Unknown norm names and repeated values are refused; a norm that an attack lacks
    (DeepFool has no L0 form) is skipped for that attack with a warning.
    """
    unknown = [norm for norm in norms if norm not in NORMS]
    if unknown:
        raise GridError(f"unknown norm(s) {', '.join(map(repr, unknown))}; "
                        f"valid norms: {', '.join(NORMS)}")
    for name, values in (("attacks", [attack_class(a).name for a in attacks]),
                         ("norms", list(norms)), ("strengths", list(strengths))):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise GridError(f"{name} lists {', '.join(repeated)} more than once")
    grid = []
    for attack in attacks:
        cls = attack_class(attack)
        check_grid_attack(cls)
        usable = [norm for norm in norms if norm in cls.norms]
        skipped = [norm for norm in norms if norm not in cls.norms]
        if skipped and usable:
            warnings.warn(f"{cls.name} has no {', '.join(skipped)} form; those cells are "
                          "skipped", stacklevel=2)
        grid += expand(cls.name, usable, strengths, **settings)
    if not grid:
        raise GridError(f"no attack in {list(attacks)} supports any norm in {list(norms)}")
    return grid


def options_grid(attacks, norms, strengths, *, steps: int = 10) -> list[AttackSpec]:
    """``advqa build --attacks …``: the product, with ``steps`` for the iterative attacks."""
    grid = []
    for attack in attacks:
        settings = {"steps": steps} if takes_steps(attack) else {}
        grid += grid_from_options([attack], norms, strengths, **settings)
    check_unique(grid)
    return grid


NAMED_GRIDS = ("demo", "table2", "full")


def choose_grid(*, config: str | Path | None = None, attacks=None, norms=("linf",),
                strengths=None, steps: int = 10, named: str = "table2",
                budget: str | None = None) -> list[AttackSpec]:
    """The grid of ``advqa build``: a grid file, else the product of ``attacks`` ×
    ``norms`` × ``strengths`` (``steps`` for the iterative attacks), else a named grid;
    ``budget`` (e.g. ``"advdss>=0.99"``) goes to every cell that takes one
    (:func:`with_budget`). A grid file sets its budgets itself."""
    if config is not None:
        if budget is not None:
            raise GridError("--budget does not apply to a grid file; write "
                            f"budget = \"{budget}\" in its [[attack]] tables instead")
        return load_grid(config)
    if attacks:
        if not strengths:
            raise GridError("--attacks needs --strengths (the ε, overshoot or κ values)")
        grid = options_grid(attacks, norms, strengths, steps=steps)
    else:
        grids = {"demo": demo_grid, "table2": table2_grid, "full": full_grid}
        if named not in grids:
            raise GridError(f"unknown grid {named!r}; valid: {', '.join(grids)}")
        grid = grids[named]()
    return grid if budget is None else with_budget(grid, budget)


def load_grid(path: str | Path) -> list[AttackSpec]:
    """Read a grid from TOML or JSON.

    Each ``[[attack]]`` table (JSON: each object of the top-level ``"attack"`` list)
    has a ``name``, a list of ``norms`` (default: the attack's first norm), a list of
    values under the attack's strength name (``eps``, ``overshoot`` or ``kappa``) and
    any other settings the attack takes, which hold for all its cells::

        [[attack]]
        name = "pgd"
        norms = ["linf", "l2"]
        eps = [0.003, 0.03]
        steps = 20

    Raises
    ------
    GridError
        For anything that could not run exactly as written: an unknown key (the
        message lists the valid ones), an unknown norm or one the attack lacks, a
        scalar where a list belongs, a value of the wrong type, or the same cell
        twice (the message gives both entries' line numbers).
    """
    path = Path(path)
    text = path.read_text()
    try:
        document = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise GridError(f"cannot parse grid file {path}: {error}") from error
    if not isinstance(document, dict):
        raise GridError(f"{path}: the top level must be an object with an \"attack\" list, "
                        f"not a {type(document).__name__}")
    extra = sorted(set(document) - {"attack"})
    if extra:
        raise GridError(f"{path}: unknown top-level key(s) {', '.join(extra)}; a grid file "
                        "holds only [[attack]] tables (JSON: an \"attack\" list)")
    entries = document.get("attack", [])
    if not isinstance(entries, list):
        raise GridError(f"{path}: \"attack\" must be a list of tables, not "
                        f"{type(entries).__name__}")
    lines = entry_lines(text, json_format=path.suffix == ".json")
    grid, where = [], []
    for index, entry in enumerate(entries):
        line = lines[index] if index < len(lines) else None
        place = f"attack entry {index + 1}" + (f", line {line}" if line else "")
        specs = entry_cells(entry, f"{path}, {place}")
        grid += specs
        where += [place] * len(specs)
    if not grid:
        raise GridError(f"{path} defines no attacks (expected [[attack]] tables)")
    check_unique(grid, where, source=str(path))
    return grid


def entry_cells(entry, place: str) -> list[AttackSpec]:
    """The cells of one grid-file entry, every key and value checked."""
    if not isinstance(entry, dict):
        raise GridError(f"{place}: expected a table of settings, got {entry!r}")
    if "name" not in entry or not isinstance(entry["name"], str):
        raise GridError(f"{place}: needs a name, e.g. name = \"pgd\"")
    cls = attack_class(entry["name"])
    try:
        check_grid_attack(cls)
    except GridError as error:
        raise GridError(f"{place}: {error}") from None
    accepted = set(inspect.signature(cls).parameters) - {"norm", "seed", cls.strength}
    valid = ["name", "norms", cls.strength, *sorted(accepted)]
    unknown = sorted(set(entry) - set(valid))
    if unknown:
        hint = "; for one norm write norms = [\"...\"]" if "norm" in unknown else ""
        raise GridError(f"{place}: unknown key(s) {', '.join(unknown)} for {cls.name}; "
                        f"valid keys: {', '.join(valid)}{hint}")
    norms = entry.get("norms", [cls.norms[0]])
    if not isinstance(norms, list) or not all(isinstance(n, str) for n in norms):
        raise GridError(f"{place}: norms must be a list of names, e.g. norms = [\"linf\"]")
    for norm in norms:
        if norm not in NORMS:
            raise GridError(f"{place}: unknown norm {norm!r}; valid norms: {', '.join(NORMS)}"
                            " (lower case)")
        if norm not in cls.norms:
            raise GridError(f"{place}: {cls.name} has no {norm} form; it supports "
                            f"{', '.join(cls.norms)}")
    if cls.strength not in entry:
        raise GridError(f"{place}: needs a list of {cls.strength} values, "
                        f"e.g. {cls.strength} = [0.03]")
    strengths = entry[cls.strength]
    if not isinstance(strengths, list) or not strengths or not all(
            is_number(value) for value in strengths):
        raise GridError(f"{place}: {cls.strength} must be a non-empty list of numbers, e.g. "
                        f"{cls.strength} = [0.03], not {strengths!r}")
    settings = {key: value for key, value in entry.items()
                if key not in ("name", "norms", cls.strength)}
    try:
        return expand(cls.name, norms, strengths, **settings)
    except ValueError as error:
        raise GridError(f"{place}: {error}") from error


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_TOML_ENTRY = re.compile(r"^[ \t]*\[\[[ \t]*attack[ \t]*\]\]", re.MULTILINE)


def entry_lines(text: str, *, json_format: bool) -> list[int]:
    """1-based line of each grid entry, for messages; empty when it cannot be told."""
    if not json_format:
        return [text.count("\n", 0, match.start()) + 1 for match in _TOML_ENTRY.finditer(text)]
    decoder = json.JSONDecoder()
    try:
        position = text.index("{")
        key_match = re.compile(r'"attack"\s*:\s*\[').search(text, position)
        if key_match is None:
            return []
        position, lines = key_match.end(), []
        while True:
            position = skip(text, position, " \t\r\n,")
            if text[position] == "]":
                return lines
            lines.append(text.count("\n", 0, position) + 1)
            _, position = decoder.raw_decode(text, position)
    except (ValueError, IndexError):
        return []


def skip(text: str, position: int, characters: str) -> int:
    while position < len(text) and text[position] in characters:
        position += 1
    return position
