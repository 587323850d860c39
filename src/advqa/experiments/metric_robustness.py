"""Antsiferova et al., the MSU Metrics Robustness Benchmark ("Comparing the robustness of
modern no-reference image- and video-quality metrics to adversarial attacks", AAAI 2024):
its leaderboard, rebuilt with advqa on the embedded photos.

Seed text: ``/work/shared/seeds/iqa-metric-robustness-benchmark.txt``, the benchmark's
methodology page (dated 07 Jun 2023): the nine attacks, the five robustness scores, the
data sets, β₁ = 1 and β₂ = 0 on scaled values and the UAP amplitudes 0.2, 0.4 and 0.8
(averaged). It publishes **no per-metric result**: no leaderboard, no score of any
metric (none for MANIQA either), and it defers the attacks' ε, iterations and step
sizes to a supplementary material that is not on this machine. :data:`PUBLISHED` is
therefore empty and every ``paper`` cell is "–"; nothing is filled in from elsewhere.

Ours come from :func:`advqa.robustness.run_benchmark` (the job engine, resumable from
``out/benchmark/benchmark.sqlite``): every default metric of ``advqa benchmark`` that
scores photos, all nine attacks, each iterative attack run at every step of a grid and
ranked at its strongest (largest mean absolute gain), UAPs averaged over the seed's
amplitudes, MI-/AMI-FGSM with the seed's momentum term (raw gradient, ``"msu"``), the
seed's robustness score (variant ``"paper"``), on all 11 embedded photos split by a
seeded draw into training images (calibration, UAPs) and test images (attacked).

``scale="full"``: 15 metrics × 9 attacks, a 7-step grid 0.125/255–8/255, 256² (about
20 min of one core); ``"smoke"``: 2 cheap metrics × 3 attacks, 2 steps, 6 photos at
64², to check the pipeline and its invariants in the test suite.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import pandas as pd

from advqa.experiments.comparison import Cell, write_reproduction

TITLE = ("Antsiferova et al., Comparing the robustness of modern no-reference image- and "
         "video-quality metrics to adversarial attacks (MSU Metrics Robustness Benchmark)")
SEED = "/work/shared/seeds/iqa-metric-robustness-benchmark.txt"

#: Published scores, ``{(metric, score): value}``, to be copied exactly from the seed
#: text's tables. The seed text has no table of results (checked: it defines the
#: attacks, scores and data sets only), so there is nothing to copy.
PUBLISHED: dict[tuple[str, str], float] = {}
#: "UAP-based attacks ... were used with 3 different amplitudes (0.2, 0.4 and 0.8) and
#: averaged" (seed text, "IQA/VQA metrics calculation").
SEED_AMPLITUDES = (0.2, 0.4, 0.8)
#: Default metrics of ``advqa benchmark`` left out here, and why (not for cost).
OFF_DOMAIN = {"dtniq_fmnist": "a quality proxy trained on 28×28 Fashion-MNIST garments, "
                              "not a metric for 256² photos"}
#: The iterative attacks' step grid at full scale (10 iterations, ε = 10/255): total travel
#: 1.25/255 to 80/255, from well inside the ε ball to past AMI-FGSM's 1/NIQE ball
#: (0.157–0.348 on these photos). A 0.25–4/255 grid left the strongest step at one of its
#: ends in 34 of 60 cells (Korhonen at 4/255 in 12 of 15), hence the wider one.
FULL_GRID = tuple(step / 255 for step in (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0))
SCORES = {"abs_gain": "absolute gain", "rel_gain": "relative gain",
          "robustness_score": "robustness score", "wasserstein_score": "Wasserstein score",
          "energy_score": "energy score"}
SCALES = ("smoke", "full")


def _plan(scale: str) -> dict:
    """Metrics, attacks, image set and attack settings of one scale."""
    from advqa.robustness.benchmark import ATTACK_NAMES, Settings
    from advqa.workflows.benchmark import default_metrics

    if scale == "full":
        return {"metrics": [name for name in default_metrics() if name not in OFF_DOMAIN],
                "attacks": list(ATTACK_NAMES), "size": 256, "limit": None,
                "settings": Settings(step_sizes=FULL_GRID, mifgsm_form="msu",
                                     amplitudes=SEED_AMPLITUDES)}
    return {"metrics": ["psnr", "piqe"], "attacks": ["fgsm", "ifgsm", "cumulative-uap"],
            "size": 64, "limit": 6,
            "settings": Settings(steps=3, step_sizes=(0.5 / 255, 2 / 255), mifgsm_form="msu",
                                 amplitudes=SEED_AMPLITUDES, uap={"epochs": 1, "size": 64})}


def _image_sets(size: int, limit: int | None, seed: int):
    """The embedded photos (the first ``limit``, if given) split as ``advqa benchmark``
    splits them: a seeded half for calibration and UAPs, the rest attacked."""
    from advqa.robustness.benchmark import ImageSet, load_image_set, split_image_set

    photos = load_image_set("photos", size=size)
    if limit is not None:
        photos = ImageSet(photos.dataset, photos.names[:limit], photos.images[:limit])
    train, test = split_image_set(photos, seed=seed)
    return photos, train, test


def _sha256(text_or_tensor) -> str:
    if isinstance(text_or_tensor, str):
        return hashlib.sha256(text_or_tensor.encode()).hexdigest()
    return hashlib.sha256(text_or_tensor.contiguous().numpy().tobytes()).hexdigest()


def _fingerprints(photos, train, test, size: int, seed: int) -> dict:
    """What was attacked: the image list, the split and the exact pixels."""
    return {"source": "photos (advqa's embedded scikit-image photos)", "size": size,
            "images": list(photos.names), "names_sha256": _sha256("\n".join(photos.names)),
            "pixels_sha256": _sha256(photos.images), "split_seed": seed,
            "train": list(train.names), "test": list(test.names),
            "split_sha256": _sha256("train:" + "\n".join(train.names)
                                    + "\ntest:" + "\n".join(test.names))}


def _number(value) -> float | None:
    """A finite float, or None (NaN, a missing rank)."""
    if value is None or pd.isna(value):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _leaderboard_cells(board: pd.DataFrame, dataset: str, attacks: int) -> list[Cell]:
    """The full leaderboard: mean rank, then each score, one row per metric in rank order."""
    cells = []
    for row in board.to_dict("records"):
        failed = f"; failed: {row['failed']}" if row["failed"] else ""
        cells.append(Cell("Leaderboard: mean rank (1 = most robust)", dataset, row["metric"],
                          PUBLISHED.get((row["metric"], "mean_rank")),
                          _number(row["mean_rank"]), "",
                          f"{row['n_attacks']} of {attacks} attacks ranked{failed}"))
    for score, label in SCORES.items():
        for row in board.to_dict("records"):
            cells.append(Cell(f"Leaderboard: {label} (mean over ranked attacks)", dataset,
                              row["metric"], PUBLISHED.get((row["metric"], score)),
                              _number(row[score]), ""))
    return cells


def _attack_cells(scores: pd.DataFrame, order: list[str], dataset: str) -> list[Cell]:
    """Per attack, each metric's absolute gain in the row that enters the leaderboard."""
    entered = scores[scores["ranked"].astype(bool)].set_index(["attack", "metric"])
    cells = []
    for attack in sorted(entered.index.get_level_values("attack").unique()):
        for metric in order:
            if (attack, metric) not in entered.index:
                continue
            row = entered.loc[(attack, metric)]
            parts = [f"step {row['step']}" if isinstance(row["step"], str) else "",
                     "mean of amplitudes" if row["amplitude"] == "mean" else "",
                     "FAILED (lowered the metric): not ranked" if row["status"] == "failed"
                     else "", f"95% t-interval {row['abs_gain_low']:+.3g}…"
                     f"{row['abs_gain_high']:+.3g}"
                     if _number(row["abs_gain_low"]) is not None else ""]
            cells.append(Cell(f"Absolute gain per attack: {attack}", dataset, metric,
                              PUBLISHED.get((metric, f"abs_gain:{attack}")),
                              _number(row["abs_gain"]), "",
                              "; ".join(part for part in parts if part)))
    return cells


def _findings(board: pd.DataFrame, scores: pd.DataFrame, attacks: int,
              full_reference: dict[str, bool]) -> list[str]:
    """What the leaderboard says, with the counts a reader needs to weigh it."""
    from advqa.robustness.leaderboard import ami_summary

    ranked = board.dropna(subset=["mean_rank"])
    notes = []
    if len(ranked):
        worst, best = ranked.iloc[-1], ranked.iloc[0]
        caveat = (f", but over {best['n_attacks']} of {attacks} attacks only: the others "
                  "failed (lowered it)" if best["n_attacks"] < attacks else "")
        notes.append(
            f"Result: least robust is {worst['metric']} (mean rank {worst['mean_rank']:.1f} "
            f"of {len(ranked)}; absolute gain {worst['abs_gain']:+.3f} over "
            f"{worst['n_attacks']} of {attacks} attacks); most robust is {best['metric']} "
            f"(mean rank {best['mean_rank']:.1f}; gain {best['abs_gain']:+.3g}){caveat}.")
    entered = scores[scores["ranked"].astype(bool)]
    failed = entered[entered["status"] == "failed"]
    kinds = {True: "full-reference", False: "no-reference"}
    per_attack = []
    for attack, rows in failed.groupby("attack", sort=True):
        counts = []
        for reference, kind in kinds.items():
            members = entered[(entered["attack"] == attack)
                              & entered["metric"].map(full_reference).eq(reference)]
            if len(members):
                counts.append(f"{int(rows['metric'].map(full_reference).eq(reference).sum())}"
                              f" of {len(members)} {kind}")
        per_attack.append(f"{attack} on {' and '.join(counts)}")
    notes.append(
        f"Failed attacks: {len(failed)} of {len(entered)} (metric, attack) cells have a "
        "negative mean gain (the attack lowered the metric): "
        + ("; ".join(per_attack) or "none") + ". advqa leaves them out of the means and "
        "ranks (the seed text reads negative scores as 'the inefficiency of the attack' but "
        "does not say how it averages them), so the metrics are ranked over different attack "
        "sets (the first table gives the count). A full-reference metric is attacked from "
        "a JPEG copy, which a universal additive perturbation rarely brings closer to the "
        "original; FGSM's single full-ε sign step adds ±ε to every pixel.")
    notes += _step_findings(entered)
    ami = ami_summary(scores)
    if ami:
        notes.append(f"AMI-FGSM: {ami}.")
    return notes


def _step_value(label: str) -> float:
    """A step label of the score table, ``"0.5/255"``, in grey levels (0.5)."""
    return float(label.split("/")[0])


def _step_findings(entered: pd.DataFrame) -> list[str]:
    """How the strongest steps fall on the grid, and how often at one of its ends."""
    stepped = entered[entered["step"].apply(lambda value: isinstance(value, str))]
    if not len(stepped):
        return []
    grid = sorted(set(stepped["step"]), key=_step_value)
    counts = stepped["step"].value_counts()
    notes = ["Strongest step of the grid (per metric and iterative attack): "
             + ", ".join(f"{label} in {counts.get(label, 0)}" for label in grid)
             + f" of {len(stepped)} cells."]
    edges = []
    for attack, rows in stepped.groupby("attack", sort=True):
        low, high = int((rows["step"] == grid[0]).sum()), int((rows["step"] == grid[-1]).sum())
        if low or high:
            edges.append(f"{attack} {low} at {grid[0]} and {high} at {grid[-1]} of {len(rows)}")
    if len(grid) > 1 and edges:
        notes.append("At an end of the grid, where a step beyond it might be stronger still: "
                     + "; ".join(edges) + ". A failed stepped cell failed at every step.")
    return notes


def _missing_metrics() -> list[str]:
    """Learned metrics advqa knows but cannot run here (no weights on disk, no pyiqa)."""
    import importlib.util

    from advqa.quality.registry import is_available, list_metrics

    missing = [name for name, info in list_metrics().items()
               if info.differentiable and not info.needs_model and not is_available(name)]
    if importlib.util.find_spec("pyiqa") is None:
        missing.append("pyiqa:<name> (MANIQA and pyiqa's other learned metrics: pyiqa is "
                       "not installed)")
    return missing


def _notes(plan: dict, fingerprints: dict, scale: str, failures: list[str]) -> list[str]:
    from advqa.robustness.benchmark import step_label

    settings = plan["settings"]
    missing = _missing_metrics()
    notes = [
        "Paper values: the seed text (the benchmark's methodology page, 07 Jun 2023) "
        "publishes no per-metric result (no leaderboard, no score of any metric, MANIQA's "
        "included), so every paper cell is '–' and no difference can be given; our "
        "leaderboard stands alone. Nothing was taken from elsewhere or tuned.",
        "Metrics: " + ", ".join(plan["metrics"])
        + (" (the default set of advqa benchmark" + "".join(
            f"; without {name}: {why}" for name, why in OFF_DOMAIN.items()) + ")"
           if scale == "full" else " (a cheap subset)")
        + ". Not run because they cannot run on this offline machine (registry "
        "is_available False: weights not on disk): " + (", ".join(missing) or "none")
        + ". The seed's benchmark is about 'new ... methods based on neural networks' (its "
        "problem definition); ours are mostly classical metrics, most of them "
        "full-reference.",
        f"Data: the seed's test sets are the NIPS 2017 development set, Derf's blue_sky "
        "and the Vimeo-90k test set, its UAP training sets COCO, Pascal VOC 2012 and "
        f"Vimeo-90k (none on this machine); ours are the {len(fingerprints['images'])} "
        f"embedded photos at {plan['size']}² (resized, centre-cropped), split with seed "
        f"{settings.seed} into {len(fingerprints['train'])} training images (calibration "
        f"range, UAP training) and {len(fingerprints['test'])} attacked test images. With "
        f"{len(fingerprints['test'])} test images each mean has a wide interval (the "
        "per-attack tables give each gain's 95% t-interval): a reading, not a ranking to cite.",
        "Calibration: the seed scales each metric by its range on the NIPS 2017 set; ours "
        "by its range on the training photos and their JPEG copies (advqa.robustness."
        "calibration), so scaled gains are on a per-metric scale of our own.",
        f"Budget: the seed defers ε, iterations and steps to its supplementary material "
        f"(not here). Ours: L∞ ε = {settings.eps * 255:g}/255, {settings.steps} iterations, "
        "step grid " + ", ".join(step_label(step) for step in settings.step_sizes)
        + " (each iterative attack ranked at its strongest step), momentum "
        f"ν = {settings.momentum:g} with the seed's g_t = ∇J + ν·g_(t-1) (raw gradient, "
        "mifgsm_form 'msu'), AMI-FGSM in the 1/NIQE ball, UAPs bounded by "
        f"{settings.uap_eps:g} and scaled by {', '.join(f'{a:g}' for a in SEED_AMPLITUDES)} "
        "then averaged, as the seed says. MADC holds the RMSE of its first 0.001 step (8 "
        "steps of 0.001, to 1e-6) where the seed says 'fixed MSE (with 0.04 precision)': "
        "advqa.attacks.madc explains that 0.04 as the public script's 10/255 RMSE ceiling.",
        f"Full-reference metrics: the seed text does not say how they are attacked; advqa "
        f"starts from a JPEG-{settings.jpeg_quality} copy and scores against the original. "
        "Robustness score: the seed's formula with β₁ = 1, β₂ = 0 on scaled values "
        "(variant 'paper', max(1 − s′, s)).",
    ]
    if failures:
        notes.append(f"Units that failed ({len(failures)}): " + "; ".join(failures[:10]))
    if scale == "smoke":
        notes.insert(0, "SMOKE SCALE: 2 metrics, 3 attacks, 2 steps of 3 iterations, 6 photos "
                        "at 64²; checks the pipeline, not a measurement.")
    return notes


def _metric_styles(metrics: list[str]) -> dict[str, dict]:
    """A colour and marker per metric that no two metrics share (up to 40 metrics)."""
    from matplotlib import colormaps

    colours, markers = colormaps["tab20"].colors, "osD^v"
    return {metric: {"color": colours[index % 20], "marker": markers[index // 20 % 5]}
            for index, metric in enumerate(metrics)}


def _gain_figure(scores: pd.DataFrame, order: list[str], path: Path) -> Path:
    """Each (metric, attack) at the row that enters the leaderboard: gain against PSNR."""
    from advqa.plotting import legend, new_figure, save_figure, subplots

    entered = scores[scores["ranked"].astype(bool)]
    styles = _metric_styles(order)
    figure = new_figure(7.6, 4.6)
    axes = subplots(figure)[0][0]
    for metric in order:
        rows = entered[entered["metric"] == metric]
        axes.scatter(rows["mean_psnr"], rows["abs_gain"], s=22, label=metric, **styles[metric])
    axes.axhline(0, color="black", linewidth=0.6)
    axes.set_xlabel("mean PSNR of the attacked test images (dB; lower = more visible)")
    axes.set_ylabel("absolute gain, scaled (below 0: attack failed)")
    axes.set_title("each attack at its strongest step (UAPs: mean of amplitudes)",
                   fontsize="medium")
    legend(axes, ncols=2, loc="upper right")
    return save_figure(figure, path)


def _step_figure(scores: pd.DataFrame, order: list[str], path: Path) -> Path | None:
    """Absolute gain against step size, one panel per iterative attack."""
    from advqa.plotting import legend, new_figure, save_figure, subplots

    stepped = scores[scores["step"].apply(lambda value: isinstance(value, str))]
    attacks = sorted(stepped["attack"].unique())
    if not attacks:
        return None
    styles = _metric_styles(order)
    figure = new_figure(3.4 * len(attacks), 3.8)
    panels = subplots(figure, 1, len(attacks), sharey=True)[0]
    for axes, attack in zip(panels, attacks, strict=True):
        for metric in order:
            rows = stepped[(stepped["attack"] == attack) & (stepped["metric"] == metric)]
            steps = [_step_value(label) for label in rows["step"]]
            order_of = sorted(range(len(steps)), key=steps.__getitem__)
            axes.plot([steps[i] for i in order_of], rows["abs_gain"].to_numpy()[order_of],
                      label=metric, linewidth=1, markersize=4, **styles[metric])
        axes.set_xscale("log", base=2)
        axes.axhline(0, color="black", linewidth=0.6)
        axes.set_title(attack, fontsize="medium")
        axes.set_xlabel("step size (/255)")
    panels[0].set_ylabel("absolute gain, scaled")
    panels[0].set_yscale("symlog", linthresh=0.01)
    legend(panels[-1], fontsize="x-small", ncols=2)
    return save_figure(figure, path)


def _figures(scores: pd.DataFrame, board: pd.DataFrame, folder: Path) -> list[Path]:
    """Gain against visibility, gain against step size and the scores per metric."""
    from advqa.data import atomic_write_bytes
    from advqa.robustness.leaderboard import score_bars

    folder.mkdir(parents=True, exist_ok=True)
    order = list(board["metric"])
    paths = [_gain_figure(scores, order, folder / "gain_vs_psnr.png"),
             _step_figure(scores, order, folder / "gain_vs_step.png"),
             atomic_write_bytes(folder / "scores_by_metric.png", score_bars(board))]
    return [Path(path) for path in paths if path is not None]


def reproduce_metric_robustness(out: str | Path, *, scale: str = "full", executor=None,
                                progress=None) -> list[Path]:
    """Run the benchmark (see the module doc) under ``out/benchmark`` and write the
    comparison files (:func:`advqa.experiments.comparison.write_reproduction`) and the
    figures to ``out``; a re-run resumes from the ledger. Returns the files written.

    Raises
    ------
    ValueError
        For an unknown ``scale``.
    RuntimeError
        When no attacked image could be scored (then there is no leaderboard).
    """
    from advqa.robustness.benchmark import run_benchmark

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    say = progress or (lambda message: None)
    started = time.monotonic()
    out = Path(out)
    plan = _plan(scale)
    settings = plan["settings"]
    photos, train, test = _image_sets(plan["size"], plan["limit"], settings.seed)
    say(f"msu: {len(plan['metrics'])} metric(s) × {len(plan['attacks'])} attack(s) on "
        f"{len(test.names)} test photos (UAPs on {len(train.names)}), {plan['size']}²")
    summary = run_benchmark(plan["metrics"], plan["attacks"], train, test, out / "benchmark",
                            settings=settings, r_score="paper", executor=executor,
                            progress=progress is not None)
    if "leaderboard_parquet" not in summary.paths:
        raise RuntimeError("no attacked image could be scored: "
                           + "; ".join(summary.failures + summary.failed_units))
    scores = pd.read_parquet(summary.paths["scores_parquet"])
    board = pd.read_parquet(summary.paths["leaderboard_parquet"])
    dataset = f"embedded photos, {len(test.names)} test images, {plan['size']}²"
    cells = [*_leaderboard_cells(board, dataset, len(plan["attacks"])),
             *_attack_cells(scores, list(board["metric"]), dataset)]
    fingerprints = _fingerprints(photos, train, test, plan["size"], settings.seed)
    figures = _figures(scores, board, out / "figures")
    full_reference = {name: facts.full_reference for name, facts in summary.facts.items()}
    notes = [*_findings(board, scores, len(plan["attacks"]), full_reference),
             *_notes(plan, fingerprints, scale, summary.failures + summary.failed_units)]
    record = {"scale": scale, "metrics": plan["metrics"], "attacks": plan["attacks"],
              "size": plan["size"], "limit": plan["limit"], "r_score": "paper",
              "benchmark": settings.describe(), "off_domain": OFF_DOMAIN,
              "unavailable": _missing_metrics(), "seed_text": SEED,
              "engine": getattr(executor, "name", "local")}
    written = write_reproduction(
        out, name="msu", title=TITLE, command=f"advqa reproduce msu --scale {scale} "
        f"--out {out}", cells=cells, settings=record, fingerprints=fingerprints,
        figures=figures, notes=notes, seconds=time.monotonic() - started)
    return [*written, *figures, summary.paths["html"]]
