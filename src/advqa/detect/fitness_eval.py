"""The Tables IV/V experiment of Feng & Cai on advqa-generated image groups.

Protocol (Sec. V-B–D):

* features of the groups (:mod:`advqa.detect.groups`): clean, adversarial (UAP),
  distorted, Fool_EV (``fooling_ev``, evolved) and Fool_GD (``fooling``, gradient
  ascent);
* ``repeats`` (10) grouped 50/50 splits of the clean/adversarial pairs with
  ``sklearn.model_selection.GroupShuffleSplit`` — a clean image and its
  adversarial version are always on the same side;
* per split: train the RBF SVM on the training pairs (clean = fit, adversarial =
  unfit) and calibrate feature squeezing on the training clean images at the
  target false-positive rate; evaluate on the held-out pairs, on the distorted
  images whose clean original is held out, and on all fooling images (Fool_EV and
  Fool_GD alike: neither is ever trained on, as in the paper);
* Baseline-1: the victim's accuracy with no gate; Baseline-2: the quality
  threshold (normalised quality < 0.3 → unfit), no training.

Per method and group: detection rate (share judged unfit; on the clean group it is
the false-alarm rate) and the victim's accuracy on the images judged fit, as mean
and standard deviation over the splits.

Besides Tables IV/V, :func:`write_tables` writes the paper's per-group statistics
of Sec. IV over *all* images of each group (not per split):

* Table II, ``table2_quality.csv``: median, mean and standard deviation of the
  normalised [0, 1] quality feature the gate uses, for clean, UAP, EV and GD
  (:func:`advqa.detect.group_stats.quality_table`);
* Table III, ``table3_confidence.csv``: the same for the victim's top-1 probability,
  the first gate feature (:func:`advqa.detect.group_stats.confidence_table`);
* Figure 4 (left), ``figure4_tsne.png``: t-SNE of the 6-D gate features of clean,
  Fool_EV, Fool_GD and UAP images (:func:`advqa.detect.tsne.tsne_figure`). The
  paper's figure shows only clean (gray) and Fool_EV (red) points; Fool_GD and UAP
  are added here in other colours.

Groups that are disabled or empty are left out of all three.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from advqa.detect.gate import Gate
from advqa.detect.groups import Group, Groups
from advqa.jobs import Ledger, LocalExecutor, Unit, run_units, unit_key

GROUP_ORDER = ("adversarial", "distorted", "fooling_ev", "fooling", "clean")
#: The unrecognizable groups (no true label, not paired with a clean image).
FOOLING_GROUPS = ("fooling_ev", "fooling")
#: advqa group name → the key :mod:`advqa.detect.group_stats` uses, and the label drawn
#: in Figure 4 (the paper's names: Fool_EV, Fool_GD).
PAPER_KEYS = {"clean": "clean", "adversarial": "uap", "fooling_ev": "ev", "fooling": "gd"}
FIGURE_LABELS = {"clean": "clean", "fooling_ev": "Fool_EV", "fooling": "Fool_GD",
                 "adversarial": "UAP"}
METHODS = ("baseline-2 (quality)", "squeeze", "svm", "gate (svm+quality+squeeze)")


def grouped_splits(pair_ids, *, repeats: int = 10, test_size: float = 0.5, seed: int = 0):
    """``repeats`` (train, test) index arrays that never separate a pair id."""
    from sklearn.model_selection import GroupShuffleSplit

    pair_ids = np.asarray(pair_ids)
    splitter = GroupShuffleSplit(n_splits=repeats, test_size=test_size, random_state=seed)
    return list(splitter.split(np.zeros(len(pair_ids)), groups=pair_ids))


def _rates(group: Group, index: np.ndarray, flags: np.ndarray | None) -> dict:
    correct = group.correct()[index]
    labelled = group.name not in FOOLING_GROUPS
    row = {"n": int(index.size),
           "baseline1_accuracy": float(correct.mean()) if labelled and index.size else np.nan}
    if flags is None:
        return row
    flags = flags[index]
    fit = ~flags
    row["detection_rate"] = float(flags.mean()) if index.size else np.nan
    row["fit_accuracy"] = (float(correct[fit].mean()) if labelled and fit.any() else np.nan)
    return row


def _held_out(group: Group, test_pairs: np.ndarray) -> np.ndarray:
    if group.name in FOOLING_GROUPS:
        return np.arange(len(group))
    return np.flatnonzero(np.isin(group.parents, test_pairs))


def evaluate(groups: Groups, *, repeats: int = 10, seed: int = 0,
             quality_threshold: float = 0.3, target_fpr: float = 0.05,
             penalty: float = 1.0, ledger_path: str | Path | None = None,
             executor=None, progress: bool = True) -> dict:
    """Run the protocol; returns ``{"runs": [...], "per_distortion": [...]}`` of raw rows.

    Each split is a unit of the job engine (:mod:`advqa.jobs`) on ``executor`` (here
    by default); with ``ledger_path`` finished splits are kept there, so a re-run
    resumes. The splits do not depend on where they ran.
    """
    pairs = np.arange(len(groups.clean))
    options = {"quality_threshold": quality_threshold, "target_fpr": target_fpr,
               "penalty": penalty}
    identity = unit_key(groups.summary, _fingerprint(groups), options, seed)
    units = [Unit(unit_key("gate-split", repeat, identity), {"repeat": repeat},
                  (repeat, train.tolist(), test.tolist()))
             for repeat, (train, test) in enumerate(grouped_splits(pairs, repeats=repeats,
                                                                   seed=seed))]
    with Ledger(ledger_path or ":memory:", "gate-eval") as ledger:
        report = run_units(ledger, units, split_unit, executor=executor or LocalExecutor(),
                           shared={"groups": groups, "options": options},
                           progress=progress, description="splits")
        if report.failures:
            raise RuntimeError(f"{len(report.failures)} split(s) failed (e.g. "
                               f"{report.failures[0].error}); re-run to retry")
        done = {row["id"]: row for row in ledger.rows()}
    ordered = [done[f"split-{repeat}"] for repeat in range(len(units))]
    return {"runs": [row for split in ordered for row in split["runs"]],
            "per_distortion": [row for split in ordered for row in split["per_distortion"]]}


def _fingerprint(groups: Groups) -> str:
    """A digest of every group's features: a unit key must change with its inputs."""
    import hashlib

    digest = hashlib.sha256()
    for group in (groups.clean, groups.adversarial, groups.distorted, groups.fooling,
                  *[g for g in (groups.fooling_ev,) if g is not None and len(g)]):
        digest.update(np.ascontiguousarray(group.features.features).tobytes())
        digest.update(np.ascontiguousarray(group.features.predictions).tobytes())
    return digest.hexdigest()[:16]


def split_unit(repeat: int, train: list[int], test: list[int], *, groups: Groups,
               options: dict) -> list[dict]:
    """One split: train the gate on the training pairs, judge every group's held-out part."""
    clean, adversarial = groups.clean, groups.adversarial
    pairs = np.arange(len(clean))
    train_pairs, test_pairs = pairs[train], pairs[test]
    runs, per_distortion = [], []
    all_groups = {g.name: g for g in _evaluated(groups)}
    gate = Gate.from_features(
        clean.features.subset(train_pairs), adversarial.features.subset(train_pairs),
        scale=_scale(groups), quality_threshold=options["quality_threshold"],
        use_squeeze=clean.features.squeeze is not None, target_fpr=options["target_fpr"],
        penalty=options["penalty"])
    for name, group in all_groups.items():
        index = _held_out(group, test_pairs)
        flags = _held_out_flags(gate, group, index)
        methods = {"baseline-2 (quality)": flags["quality"], "svm": flags["svm"]}
        if "squeeze" in flags:
            methods["squeeze"] = flags["squeeze"]
        methods["gate (svm+quality+squeeze)"] = np.any(list(flags.values()), axis=0)
        runs.append({"repeat": repeat, "method": "baseline-1 (no gate)", "group": name,
                     **_rates(group, index, np.zeros(len(group), dtype=bool))})
        for method, method_flags in methods.items():
            runs.append({"repeat": repeat, "method": method, "group": name,
                         **_rates(group, index, method_flags)})
            if name == "distorted":
                for kind in sorted(set(group.kinds)):
                    for level in range(1, 6):
                        mask = (np.asarray(group.kinds) == kind) & (group.levels == level)
                        sub = index[mask[index]]
                        per_distortion.append({"repeat": repeat, "method": method,
                                               "kind": kind, "level": level,
                                               **_rates(group, sub, method_flags)})
    return [{"id": f"split-{repeat}", "runs": runs, "per_distortion": per_distortion}]


def _held_out_flags(gate: Gate, group: Group, index: np.ndarray) -> dict[str, np.ndarray]:
    """The gate's flags over the whole group, computed on the held-out ``index`` only
    (the others stay False and are never read): the SVM's kernel over a 10⁵-image
    distorted group is the costliest step of a split, and half of it is held out."""
    flags = {}
    for detector, held in gate.flags(group.features.subset(index)).items():
        full = np.zeros(len(group), dtype=bool)
        full[index] = held
        flags[detector] = full
    return flags


def _evaluated(groups: Groups) -> list[Group]:
    """The groups of Tables IV/V in :data:`GROUP_ORDER` (Fool_EV only when present;
    Fool_GD always, as before Fool_EV existed)."""
    present = [groups.adversarial, groups.distorted, groups.fooling, groups.clean]
    if groups.fooling_ev is not None and len(groups.fooling_ev):
        present.append(groups.fooling_ev)
    return sorted(present, key=lambda group: GROUP_ORDER.index(group.name))


def _scale(groups: Groups):
    """The quality scale the groups were extracted with (kept in their summary)."""
    from advqa.detect.features import QualityScale

    return QualityScale.from_json(groups.summary["quality"])


def summarise(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Mean and standard deviation over repeats of every numeric column, per ``keys``."""
    buckets: dict[tuple, list[dict]] = {}
    for row in rows:
        buckets.setdefault(tuple(row[key] for key in keys), []).append(row)
    table = []
    for key, members in buckets.items():
        out = dict(zip(keys, key, strict=True))
        for column in ("n", "baseline1_accuracy", "detection_rate", "fit_accuracy"):
            values = np.array([m.get(column, np.nan) for m in members], dtype=float)
            if np.all(np.isnan(values)):
                continue
            out[f"{column}_mean"] = float(np.nanmean(values))
            if column != "n":
                out[f"{column}_std"] = float(np.nanstd(values))
        table.append(out)
    return table


def _write_csv(path: Path, rows: list[dict]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [column for column in row if column not in columns]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    return path


def tables(result: dict) -> dict[str, list[dict]]:
    """Table IV (baselines), Table V (detectors) and the per-distortion breakdown."""
    summary = summarise(result["runs"], ("method", "group"))
    order = {name: i for i, name in enumerate(GROUP_ORDER)}
    summary.sort(key=lambda row: order.get(row["group"], 99))
    table_iv = [row for row in summary if row["method"].startswith("baseline")]
    table_v = [row for row in summary if not row["method"].startswith("baseline")]
    table_iv.sort(key=lambda row: (row["method"], order.get(row["group"], 99)))
    method_order = {name: i for i, name in enumerate(METHODS)}
    table_v.sort(key=lambda row: (method_order.get(row["method"], 99),
                                  order.get(row["group"], 99)))
    distortion = summarise(result["per_distortion"], ("method", "kind", "level"))
    return {"table_iv": table_iv, "table_v": table_v, "per_distortion": distortion}


def group_statistics(groups: Groups) -> tuple[dict, dict]:
    """Tables II and III as :mod:`advqa.detect.group_stats` frames: (quality, confidence).

    Quality is the gate's normalised quality feature (6th), confidence its top-1
    probability (1st); every image of clean, UAP, Fool_EV and Fool_GD (empty groups
    left out).
    """
    from advqa.detect.group_stats import confidence_table, quality_table

    members = [groups.clean, groups.adversarial, *groups.fooling_groups()]
    quality = {PAPER_KEYS[g.name]: g.features.features[:, 5] for g in members if len(g)}
    confidence = {PAPER_KEYS[g.name]: g.features.features[:, 0] for g in members if len(g)}
    return quality_table(quality), confidence_table(confidence)


def _write_frame(path: Path, frame) -> Path:
    """A group_stats table as CSV: a ``group`` key column (clean, uap, ev, gd) first."""
    table = frame.reset_index()
    table.insert(0, "group", frame.attrs["groups"])
    table.to_csv(path, index=False, float_format="%.4f")
    return path


def write_figure4(groups: Groups, path: Path, *, seed: int = 0) -> Path:
    """Figure 4 (left): t-SNE of the gate features; clean gray, Fool_EV red (as in the
    paper), then Fool_GD and UAP."""
    from advqa.detect.tsne import tsne_figure

    members = [groups.clean, *groups.fooling_groups(), groups.adversarial]
    features = np.concatenate([g.features.features for g in members])
    labels = [FIGURE_LABELS[g.name] for g in members for _ in range(len(g))]
    return tsne_figure(features, labels, path, seed=seed,
                       title="Fig. 4: gate features (top-5 probabilities + quality)")


def write_tables(result: dict, groups: Groups, out, settings: dict, *,
                 progress=None) -> list[Path]:
    """Write Tables IV/V, the per-distortion breakdown, the raw runs, Tables II/III,
    Figure 4 and ``summary.json`` into ``out``; return the paths. ``progress`` gets a
    message before the t-SNE of Figure 4, the one slow step (about 80 s for the 17,800
    points of a 10k-image Fashion-MNIST run on one CPU thread)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [_write_csv(out / f"{name}.csv", rows) for name, rows in tables(result).items()]
    written.append(_write_csv(out / "runs.csv", result["runs"]))
    quality, confidence = group_statistics(groups)
    written.append(_write_frame(out / "table2_quality.csv", quality))
    written.append(_write_frame(out / "table3_confidence.csv", confidence))
    if progress is not None:
        points = len(groups.clean) + len(groups.adversarial) + sum(
            len(g) for g in groups.fooling_groups())
        progress(f"Figure 4: t-SNE of {points} points (Barnes-Hut, one CPU thread: about "
                 "a minute per 10,000 points)")
    written.append(write_figure4(groups, out / "figure4_tsne.png",
                                 seed=int(settings.get("seed", 0))))
    sized = [groups.clean, groups.adversarial, groups.distorted, groups.fooling,
             *[g for g in (groups.fooling_ev,) if g is not None and len(g)]]
    summary = {"settings": settings, "groups": groups.summary,
               "sizes": {g.name: len(g) for g in sized}}
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    written.append(path)
    return written
