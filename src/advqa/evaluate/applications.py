"""AEQA applications: the AdvDSS/AEQA paper's section 5.4.

- :func:`attack_comparison` — Table 6: attacks at one budget, with mean AEQA, mean JS
  divergence, mean AdvDSS and success rate, each with a 95% interval.
- :func:`best_settings` and :func:`aeqa_curves` — Figure 7: mean AEQA against
  strength for each attack, and the strength with the peak.
- :class:`AEQAObjective` and :func:`maximise_aeqa` — Table 7: AEs found by
  maximising AEQA itself with L-BFGS (an objective for the one attack engine),
  compared with PGD at equal success by :func:`compare_with_pgd`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from advqa.attacks import Evaluation, Objective, get_attack
from advqa.attacks.budgets import Linf
from advqa.plotting import legend, new_figure, save_figure, subplots
from advqa.quality.aeqa import aeqa_scores
from advqa.study.build import grid_rows

Z95 = 1.959963984540054


class AEQAObjective(Objective):
    """Per-sample AEQA of candidate AEs against fixed clean images, to be maximised.

    Success means the model's prediction differs from its clean prediction.
    """

    def __init__(self, model, clean: torch.Tensor, **aeqa_options):
        self.module = model
        self.clean = clean
        self.options = aeqa_options
        with torch.no_grad():
            self.clean_prediction = model(clean).argmax(dim=1)

    def evaluate(self, images: torch.Tensor) -> Evaluation:
        scores = aeqa_scores(self.module, self.clean, images, **self.options)
        with torch.no_grad():
            success = self.module(images).argmax(dim=1) != self.clean_prediction
        return Evaluation(scores["aeqa"], success)


def maximise_aeqa(model, images: torch.Tensor, *, steps: int = 20, seed: int = 0,
                  **options) -> dict[str, torch.Tensor]:
    """AEs maximising AEQA with L-BFGS (20 iterations by default, box by tanh).

    Returns the AEs with their ``aeqa``, ``js``, ``advdss``, ``success`` (prediction
    changed), ``l2`` and ``linf``, and the ``start_aeqa`` of the random start.
    """
    from advqa.norms import distances

    objective = AEQAObjective(model, images)
    attack = get_attack("lbfgs", steps=steps, seed=seed, **options)
    adversarial, _ = attack.perturb(objective, images)
    start = Linf(attack.start_eps).random_start(images, attack.generator(images.device))
    with torch.no_grad():
        start_aeqa = aeqa_scores(model, images, start)["aeqa"]
    final = aeqa_scores(model, images, adversarial)
    with torch.no_grad():
        success = model(adversarial).argmax(dim=1) != objective.clean_prediction
    measured = distances(images, adversarial)
    return {"images": adversarial, **{k: v.detach() for k, v in final.items()},
            "start_aeqa": start_aeqa, "success": success, "l2": measured["l2"],
            "linf": measured["linf"]}


def mean_interval(values: pd.Series) -> tuple[float, float, float]:
    """Mean and normal-approximation 95% interval of the mean."""
    values = values.dropna().astype(float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = values.mean()
    half = Z95 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, mean - half, mean + half


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """Wilson score 95% interval of a success rate."""
    if trials == 0:
        return math.nan, math.nan
    rate = successes / trials
    denominator = 1 + Z95**2 / trials
    centre = (rate + Z95**2 / (2 * trials)) / denominator
    half = Z95 * math.sqrt(rate * (1 - rate) / trials + Z95**2 / (4 * trials**2)) / denominator
    return centre - half, centre + half


def attack_comparison(scored: pd.DataFrame, attempts: pd.DataFrame | None, *, norm: str,
                      strength: float) -> pd.DataFrame:
    """Table 6: every attack at one (norm, strength) — AEQA, JS, AdvDSS and success rate.

    ``scored`` is a scored manifest (kept AEs); ``attempts`` the per-cell build summary
    (``tried``/``correct``/``fooled``), from which success rates come.
    """
    scored = grid_rows(scored)  # a --search minimal row's strength is its own, not a cell's
    cell = scored[(scored.norm == norm) & np.isclose(scored.strength, strength)]
    attacks = set(cell.attack)
    if attempts is not None:
        attempts = grid_rows(attempts)
        # An attack that made no AE at this budget is a row too (success 0, no scores).
        tried = attempts[(attempts.norm == norm) & np.isclose(attempts.strength, strength)]
        attacks |= set(tried.attack)
    rows = []
    for attack in sorted(attacks):
        group = cell[cell.attack == attack]
        row = {"attack": attack, "norm": norm, "strength": strength, "aes": len(group)}
        for column in ("aeqa", "js", "advdss"):
            if column in cell:
                mean, low, high = mean_interval(group[column])
                row.update({f"mean_{column}": mean, f"{column}_low": low, f"{column}_high": high})
        row.update(success_columns(attempts, attack, norm, strength))
        rows.append(row)
    return pd.DataFrame(rows)


def success_columns(attempts, attack, norm, strength) -> dict:
    if attempts is None:
        return {}
    match = attempts[(attempts.attack == attack) & (attempts.norm == norm)
                     & np.isclose(attempts.strength, strength)]
    if match.empty:
        return {}
    fooled, correct = int(match.fooled.iloc[0]), int(match.correct.iloc[0])
    low, high = wilson_interval(fooled, correct)
    return {"success_rate": fooled / correct if correct else math.nan,
            "success_low": low, "success_high": high}


def aeqa_by_strength(scored: pd.DataFrame) -> pd.DataFrame:
    """Mean AEQA per (attack, norm, strength) over the grid's AEs."""
    return (grid_rows(scored).groupby(["attack", "norm", "strength"]).aeqa.mean()
            .rename("mean_aeqa").reset_index())


def best_settings(scored: pd.DataFrame) -> pd.DataFrame:
    """Figure 7's marks: per (attack, norm), the strength with the peak mean AEQA."""
    curves = aeqa_by_strength(scored).dropna(subset=["mean_aeqa"])
    peaks = curves.loc[curves.groupby(["attack", "norm"]).mean_aeqa.idxmax()]
    return peaks.rename(columns={"strength": "best_strength",
                                 "mean_aeqa": "peak_mean_aeqa"}).reset_index(drop=True)


def attack_strength(name: str) -> str:
    """The name of an attack's strength parameter (``eps``, ``overshoot``, ``kappa``)."""
    from advqa.attacks import attack_class

    try:
        return attack_class(name).strength
    except KeyError:
        return "strength"


def aeqa_curves(scored: pd.DataFrame, path: str | Path) -> Path:
    """Figure 7: mean AEQA against strength per attack, peaks marked; PNG or SVG.

    One panel per norm for ε and DeepFool's overshoot (log axis, as the paper plots
    them), and C&W's κ on a panel of its own with a linear axis: κ = 0 has no place on
    a log axis, and κ is not a distance.
    """
    curves, peaks = aeqa_by_strength(scored), best_settings(scored)
    if "strength_name" in scored.columns:
        kind = scored.drop_duplicates(["attack", "norm", "strength"]).set_index(
            ["attack", "norm", "strength"])["strength_name"]
        curves["kappa"] = [kind.get((row.attack, row.norm, row.strength)) == "kappa"
                           for row in curves.itertuples()]
    else:  # a table without the column: the attack decides (C&W's strength is κ)
        curves["kappa"] = curves.attack.map(lambda name: attack_strength(name) == "kappa")
    panels = [(norm, curves[(curves.norm == norm) & ~curves.kappa], "log",
               "strength (ε or overshoot)") for norm in sorted(curves.norm.unique())
              if (~curves.kappa[curves.norm == norm]).any()]
    if curves.kappa.any():
        panels.append(("C&W κ", curves[curves.kappa], "linear", "confidence margin κ"))
    figure = new_figure(5 * len(panels), 4)
    for axis, (title, part, scale, label) in zip(subplots(figure, 1, len(panels))[0], panels,
                                                 strict=True):
        for (attack, norm), curve in part.groupby(["attack", "norm"]):
            line, = axis.plot(curve.strength, curve.mean_aeqa, marker="o",
                              label=attack if scale == "log" else f"{attack} {norm}")
            peak = peaks[(peaks.attack == attack) & (peaks.norm == norm)]
            axis.scatter(peak.best_strength, peak.peak_mean_aeqa, s=160, marker="*",
                         color=line.get_color(), zorder=3)
        axis.set(xscale=scale, xlabel=label, ylabel="mean AEQA", title=title)
        legend(axis)
    return save_figure(figure, path)


def compare_with_pgd(model, images: torch.Tensor, labels: torch.Tensor, lbfgs: dict, *,
                     eps_grid=(1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255),
                     steps: int = 10) -> pd.DataFrame:
    """The L-BFGS AEQA AEs next to L∞ PGD at the smallest ε whose success is at least theirs.

    Success for both is a changed prediction; AdvDSS, L2 and L∞ are means over all samples.
    """
    from advqa.norms import distances
    from advqa.quality.advdss import advdss

    target = lbfgs["success"].float().mean().item()
    rows = [{"method": "lbfgs-aeqa", "eps": math.nan, "success_rate": target,
             "mean_advdss": lbfgs["advdss"].mean().item(), "mean_l2": lbfgs["l2"].mean().item(),
             "mean_linf": lbfgs["linf"].mean().item()}]
    with torch.no_grad():
        clean = model(images).argmax(dim=1)
    for eps in eps_grid:
        attack = get_attack("pgd", eps=eps, steps=steps, random_start=False)
        adversarial = attack(model, images, labels)
        with torch.no_grad():
            rate = (model(adversarial).argmax(dim=1) != clean).float().mean().item()
        if rate >= target or eps == eps_grid[-1]:
            measured = distances(images, adversarial)
            rows.append({"method": "pgd-linf", "eps": eps, "success_rate": rate,
                         "mean_advdss": advdss(reference=images,
                                               distorted=adversarial).mean().item(),
                         "mean_l2": measured["l2"].mean().item(),
                         "mean_linf": measured["linf"].mean().item()})
            break
    return pd.DataFrame(rows)


def lbfgs_table(study: str | Path, count: int | None = None, *, steps: int = 20,
                pgd_steps: int = 10) -> pd.DataFrame:
    """Table 7 on a study's references: L-BFGS on AEQA (``steps`` iterations) against the
    study's model on the first ``count`` reference images (all by default), beside PGD
    at equal success (:func:`compare_with_pgd`). Success is a changed prediction, so the
    labels are the model's clean predictions."""
    from advqa.data import read_image
    from advqa.models import load_classifier
    from advqa.study.layout import StudyDir

    layout = StudyDir(study)
    model = load_classifier(layout.settings()["model"])
    paths = layout.reference_files()[:count]
    images = torch.stack([read_image(path) for path in paths]).to(model.device)
    with torch.no_grad():
        labels = model(images).argmax(dim=1)
    found = maximise_aeqa(model, images, steps=steps)
    table = compare_with_pgd(model, images, labels, found, steps=pgd_steps)
    return table.assign(images=len(paths), successes=[int(found["success"].sum())]
                        + [math.nan] * (len(table) - 1))


def common_budget(scored: pd.DataFrame) -> tuple[str, float]:
    """The (norm, strength) cell shared by the most ε-attacks; ties go to L∞, then smaller ε."""
    scored = grid_rows(scored)
    eps_attacks = scored[scored.strength_name == "eps"]
    counts = eps_attacks.groupby(["norm", "strength"]).attack.nunique().reset_index()
    counts["linf_first"] = counts.norm != "linf"
    best = counts.sort_values(["attack", "linf_first", "strength"],
                              ascending=[False, True, True]).iloc[0]
    return str(best.norm), float(best.strength)


def write_applications(study: str | Path, *, norm: str | None = None,
                       strength: float | None = None) -> Path:
    """Write Table 6, Figure 7 and its tables into the study's applications folder.

    The folder (:class:`advqa.study.Applications`, ``<study>/aeqa_applications/``)
    gets the attack comparison (Table 6), the mean AEQA per (attack, norm, strength)
    (Figure 7's curves), the strength with the peak of each curve (its marks) and the
    figure itself; the report shows these as they are. Needs a scored study
    (``scored_manifest`` with ``aeqa`` and ideally ``js`` and ``advdss``); the budget
    defaults to :func:`common_budget`. Returns the folder.

    Raises
    ------
    FileNotFoundError
        When the study is not scored, saying how to score it.
    ValueError
        When it has no ``aeqa`` scores.
    """
    from advqa.study.layout import StudyDir

    layout = StudyDir(study)
    scored = layout.scored_manifest(required=True)
    if "aeqa" not in scored:
        raise ValueError(f"{layout.path} has no aeqa scores: run "
                         f"`advqa score --study {layout.path} --metrics aeqa` first")
    attempts = layout.success_table()
    if norm is None or strength is None:
        norm, strength = common_budget(scored)
    output = layout.applications
    output.path.mkdir(exist_ok=True)
    output.write_attack_comparison(
        attack_comparison(scored, attempts, norm=norm, strength=strength))
    output.write_curves(aeqa_by_strength(scored))
    output.write_best_settings(best_settings(scored))
    aeqa_curves(scored, output.curves_figure_path)
    return output.path
