"""``advqa build``: generate AEs over a grid, as in section 3.1 of the AdvDSS/AEQA paper.

References are resized and centre-cropped to the classifier's input, quantised
to 8 bits and saved; the *saved* reference is what gets attacked. Each AE is
quantised to 8 bits before its prediction and distances are measured, so the
manifest describes exactly the PNG on disk. AEs that do not fool the model are
filtered, as in the paper, unless ``keep_failed`` is set; references the model
already misclassifies give no successful AEs.

Work unit = (grid cell, fixed chunk of references). Chunks never change
between runs, so a resumed build computes every unit exactly as an
uninterrupted one would.

``search="minimal"`` (:mod:`advqa.study.minimal`) runs, per grid cell, a per-image
bisection instead (:func:`advqa.study.minimal.search_axis`): on ε or overshoot in log
space from the cell's strength down to 1/256 of it, on κ linearly from the cell's κ down
to 0, on a budgeted cell's threshold (its slack from the metric's perfect score, in log
space). Each found AE becomes a manifest row with ``search = "minimal"``, ``searched``
(eps, overshoot, kappa or budget), ``searched_value`` (the strength found, or the
tightest fooling threshold) and ``bisection_calls``; ``strength`` is the attack strength
the AE ran at (the cell's ε for a budget search). An image not fooled even at the upper
end gives a row (kept only with ``keep_failed``) with ``success = False``, the cell's
``strength`` and no ``searched_value``. Those columns appear only in a manifest that
holds such rows; there, other rows have ``search = "grid"``.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

import advqa
from advqa.attacks import distances, scale_note
from advqa.data import (
    SampleSet,
    atomic_write_bytes,
    encode_png,
    preprocess_batch,
    quantize,
    read_image,
    remove_stale_temporaries,
)
from advqa.jobs import Ledger, LocalExecutor, Unit, run_units, unit_key, unit_seed
from advqa.study.grid import AttackSpec, check_unique
from advqa.study.layout import StudyDir
from advqa.study.store import StudyLock

#: Version of the study layout: 2 = AE ids carry the cell key, the manifest holds
#: the SHA-256 of every PNG it lists; 3 = the ledger is advqa.jobs' (job "build").
LAYOUT = 3

MANIFEST_COLUMNS = [
    "id", "reference_path", "adversarial_path", "image", "attack", "norm", "strength_name",
    "strength", "parameters", "label", "clean_prediction", "adversarial_prediction",
    "clean_class", "adversarial_class", "clean_correct", "success", "l0", "l1", "l2", "linf",
    "steps", "reference_sha256", "adversarial_sha256",
]
#: Columns a manifest gains when it holds rows of a minimal-strength search.
SEARCH_COLUMNS = ["search", "searched", "searched_value", "bisection_calls"]


def grid_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of grid cells: without those of a minimal-strength search (no ``search``
    column, or a missing value, means grid)."""
    if "search" not in table.columns:
        return table
    return table[table["search"].fillna("grid") != "minimal"]


def minimal_search_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a minimal-strength search (none when the study ran no search)."""
    if "search" not in table.columns:
        return table.iloc[0:0]
    return table[table["search"].fillna("grid") == "minimal"]
SEARCHES = ("minimal",)


@dataclass
class BuildSummary:
    """What a build produced; ``manifest`` holds the rows that were kept."""

    output: Path
    manifest: pd.DataFrame
    attempts: pd.DataFrame
    attempted: int
    skipped_units: int
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def success_table(self) -> pd.DataFrame:
        """Per grid cell: AEs tried, references correct, fooled, median distances of those kept."""
        keys = ["attack", "norm", "strength"]
        attempts = self.attempts.assign(correct=self.attempts.clean_correct.fillna(True))
        manifest = self.manifest
        if "search" in attempts.columns:
            # A minimal search's rows are grouped by their cell (its upper end), not by
            # each image's own strength.
            attempts, manifest = searched_by_cell(attempts), searched_by_cell(manifest)
            keys = ["search", *keys]
        tried = attempts.groupby(keys).agg(
            tried=("id", "size"), correct=("correct", "sum"), fooled=("success", "sum"))
        kept = manifest.groupby(keys).agg(
            median_l2=("l2", "median"), median_linf=("linf", "median"))
        table = tried.join(kept).reset_index()
        # The success rate counts only references the model classified correctly.
        table["success_rate"] = table.fooled / table.correct.clip(lower=1)
        columns = ["tried", "correct", "fooled", "success_rate", "median_l2", "median_linf"]
        return table[[*keys, *columns]]


def searched_by_cell(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each minimal-search row's ``strength`` set to its cell's (the upper
    end, in ``parameters``), so that rows group by cell."""
    if not len(table):
        return table
    minimal = table["search"] == "minimal"
    upper = table.loc[minimal, "parameters"].map(cell_strength)
    return table.assign(strength=table["strength"].where(~minimal, upper))


def cell_strength(parameters: str) -> float:
    """The strength of the grid cell a minimal row was searched from."""
    parameters = json.loads(parameters)
    return parameters.get("cell_strength", parameters["upper"])


def build_key(spec: AttackSpec, names: list[str], model_name: str, seed: int) -> str:
    """A unit's key: its cell's every setting, its references, the model and the seed."""
    return unit_key(spec.describe(), names, model_name, seed)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_references(samples: SampleSet, references: torch.Tensor,
                    output: Path) -> tuple[list[str], list[str]]:
    """Write each reference PNG once; return the paths and the files' SHA-256.

    A reference file already in the study must hold the very pixels now being
    attacked: another source with the same file names is refused, not mixed in.
    """
    paths, hashes = [], []
    for sample, image in zip(samples, references, strict=True):
        relative = StudyDir.reference_path(sample.name)
        data = encode_png(image, where=relative)
        path = output / relative
        if path.exists() and path.read_bytes() != data:
            if not torch.equal(read_image(path), image):
                raise ValueError(
                    f"{path} holds a different image than the reference {sample.name!r} "
                    f"now being attacked ({sample.path or sample.source}); a study keeps one "
                    "image per name: use a new --out for another source")
            data = path.read_bytes()
        else:
            atomic_write_bytes(path, data)
        paths.append(relative)
        hashes.append(sha256(data))
    return paths, hashes


def class_name(model, index: int) -> str:
    names = getattr(getattr(model, "info", None), "class_names", ())
    return names[index] if 0 <= index < len(names) else ""


def attack_quantised(attack, model, references, labels):
    """Attack, quantise to 8 bits, then predict and measure what will be saved."""
    result = attack.run(model, references, labels)
    adversarial = quantize(result.images)
    with torch.no_grad():
        prediction = model(adversarial).argmax(dim=1)
    return adversarial, prediction, distances(references, adversarial), result.steps


@dataclass
class References:
    """The attacked references: quantised images and what is known about each."""

    samples: SampleSet
    images: torch.Tensor
    paths: list[str]
    hashes: list[str]
    true_labels: list[int | None]
    clean_predictions: torch.Tensor
    labels: torch.Tensor  # attacked label: the true one, else the clean prediction


def prepare_references(samples: SampleSet, model, output: Path, batch_size: int) -> References:
    """Decode, resize and quantise every reference, one file at a time; references whose
    pixels fail to decode are left out and listed in ``failures`` of the result."""
    info = model.info
    prepared = preprocess_batch(samples, size=info.input_size, resize=info.resize_size)
    if not prepared.samples:
        raise ValueError(f"none of the {len(samples)} images could be decoded: "
                         + "; ".join(f"{f.path}: {f.reason}" for f in prepared.failures[:5]))
    samples = SampleSet(prepared.samples, prepared.failures)
    images = quantize(prepared.images).to(model.device)
    with torch.no_grad():
        clean = torch.cat([model(part).argmax(1) for part in images.split(batch_size)])
    true_labels = [sample.label for sample in samples]
    labels = torch.tensor([int(clean[i]) if label is None else label
                           for i, label in enumerate(true_labels)], device=model.device)
    paths, hashes = save_references(samples, images.cpu(), output)
    return References(samples, images, paths, hashes, true_labels, clean, labels)


def fooled(clean: int, predicted: int, label: int) -> bool:
    """An AE succeeds when it flips a *correct* prediction; a reference the model
    already gets wrong yields no adversarial example, whatever the attack did."""
    return clean == label and predicted != label


def unit_rows(references: References, model, spec, chunk, outcome, parameters) -> list[dict]:
    _, prediction, measured, steps = outcome
    rows = []
    for position, index in enumerate(chunk.tolist()):
        name = references.samples[index].name
        identifier = f"{name}__{spec.identifier()}"
        clean, predicted = int(references.clean_predictions[index]), int(prediction[position])
        true_label = references.true_labels[index]
        rows.append({
            "id": identifier,
            "reference_path": references.paths[index],
            "adversarial_path": StudyDir.adversarial_path(identifier),
            "image": name,
            "attack": spec.attack,
            "norm": spec.norm,
            "strength_name": spec.strength_name,
            "strength": spec.strength,
            "parameters": json.dumps(parameters, sort_keys=True),
            "label": true_label,
            "clean_prediction": clean,
            "adversarial_prediction": predicted,
            "clean_class": class_name(model, clean),
            "adversarial_class": class_name(model, predicted),
            "clean_correct": None if true_label is None else clean == true_label,
            "success": fooled(clean, predicted, int(references.labels[index])),
            **{key: float(measured[key][position]) for key in ("l0", "l1", "l2", "linf")},
            "steps": int(steps[position]),
            "reference_sha256": references.hashes[index],
            "adversarial_sha256": None,  # set when the PNG is written
        })
    return rows


def manifest_frame(rows: list[dict], keep_failed: bool) -> pd.DataFrame:
    searched = any("search" in row for row in rows)
    table = pd.DataFrame(rows, columns=MANIFEST_COLUMNS + (SEARCH_COLUMNS if searched else []))
    if searched:
        table["search"] = table["search"].fillna("grid")
        table["bisection_calls"] = table["bisection_calls"].astype("Int64")
    if not keep_failed:
        table = table[table["success"].astype(bool)]
    table = table.astype({"label": "Int64", "clean_correct": "boolean", "l0": "int64"})
    return table.reset_index(drop=True)


def check_labels(samples: SampleSet, model) -> None:
    """Refuse labels outside the model's classes up front, naming the images."""
    classes = model.info.num_classes
    bad = [sample for sample in samples
           if sample.label is not None and not 0 <= sample.label < classes]
    if bad:
        shown = "; ".join(f"{s.name} ({s.path or s.source}): label {s.label}" for s in bad[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ValueError(f"{len(bad)} label(s) outside the {classes} classes of "
                         f"{model.info.name} (0..{classes - 1}): {shown}{more}")


def warn_about_budgets(grid: list[AttackSpec], shape: tuple[int, ...]) -> None:
    """Warn once per cell whose strength amounts to a whole-image change."""
    for spec in grid:
        if spec.strength_name == "eps":
            text, suspect = scale_note(spec.norm, spec.strength, shape)
            if suspect:
                warnings.warn(f"{spec.label()}: {text}", stacklevel=3)


def study_document(output: Path, model, grid, *, seed: int, batch_size: int,
                   keep_failed: bool, sources: list[str], append: bool,
                   resuming: bool, search: dict | None = None) -> tuple[dict, list[str]]:
    """``study.json`` for this run, checked against the study being resumed.

    A resumed study must keep the model, weights, seed, batch size (it fixes the
    work units and their random starts) and ``keep_failed`` (failed AEs were not
    written without it). Another grid or source is refused unless ``append``; then
    ``grid`` is the union of every run's cells, ``grids`` lists each grid that
    contributed, and ``sources`` every source. Returns the document and notes.
    """
    cells = [{"key": spec.key(), **spec.describe()} for spec in grid]
    document = {
        "advqa": advqa.__version__, "python": sys.version.split()[0], "torch": torch.__version__,
        "platform": platform.platform(), "layout": LAYOUT, "model": model.info.name,
        "weights": model.info.weights, "seed": seed, "batch_size": batch_size,
        "keep_failed": keep_failed, "sources": sorted(sources), "grid": cells, "grids": [cells],
    }
    if search is not None:
        document["searches"] = [search]
    if not resuming or not StudyDir(output).settings_path.exists():
        return document, []
    previous = StudyDir(output).settings()
    if "searches" in previous:  # every search run into the study, once each
        earlier = previous["searches"]
        document["searches"] = earlier + [s for s in document.get("searches", [])
                                          if s not in earlier]
    if previous.get("layout") != LAYOUT:
        raise ValueError(f"{output} was built by an older advqa whose AE ids leave out "
                         "settings such as steps; build into a new --out")
    for name in ("model", "weights", "seed", "batch_size", "keep_failed"):
        if previous.get(name) != document[name]:
            raise ValueError(
                f"{output} was built with {name} = {previous.get(name)!r}, this run asks for "
                f"{document[name]!r}; resume with the same {name} or use a new --out")
    known = {cell["key"] for cell in previous["grid"]}
    new = [cell for cell in cells if cell["key"] not in known]
    same_grid = known == {cell["key"] for cell in cells}
    new_sources = sorted(set(sources) - set(previous["sources"]))
    if not (same_grid and not new_sources) and not append:
        raise ValueError(
            f"{output} holds a study of {len(known)} grid cells from "
            f"{', '.join(previous['sources'])}; this run asks for {len(cells)} cells "
            f"({len(new)} not in the study) from {', '.join(sorted(sources))}. Pass --append "
            "to add them to the study (study.json then lists every grid), or use a new --out")
    document["grid"] = previous["grid"] + new
    document["grids"] = previous["grids"] + ([] if same_grid else [cells])
    document["sources"] = sorted(set(previous["sources"]) | set(sources))
    notes = []
    if new:
        notes.append(f"appended {len(new)} grid cells to the {len(known)} already in {output}")
    if new_sources:
        notes.append(f"appended source(s) {', '.join(new_sources)}")
    return document, notes


def write_adversarial(row: dict, image: torch.Tensor, output: Path) -> None:
    """Write one AE's PNG atomically and record its SHA-256 in its row."""
    data = encode_png(image, where=row["adversarial_path"])
    atomic_write_bytes(output / row["adversarial_path"], data)
    row["adversarial_sha256"] = sha256(data)


def missing_files(rows: list[dict], output: Path, keep_failed: bool) -> list[dict]:
    """Rows the manifest would list whose PNG is not on disk (should never happen)."""
    listed = [row for row in rows if row["success"] or keep_failed]
    return [row for row in listed if not (output / row["adversarial_path"]).is_file()]


def build_dataset(
    samples: SampleSet,
    model,
    grid: list[AttackSpec],
    output: str | Path,
    *,
    batch_size: int = 8,
    keep_failed: bool = False,
    seed: int = 0,
    append: bool = False,
    executor=None,
    progress: bool = True,
    search: str | None = None,
    rounds: int = 8,
    metric: str = "advdss",
) -> BuildSummary:
    """Attack every sample with every grid cell and write an AdvDB-style study directory.

    Parameters
    ----------
    samples : SampleSet
        References; those without a label are attacked w.r.t. the clean prediction.
        Labels must be classes of ``model``.
    model : advqa.models.Classifier
        Source model; its ``info`` gives the input and resize sizes.
    grid : list of AttackSpec
        Grid cells, e.g. :func:`advqa.study.table2_grid`; no cell twice.
    output : path
        Study directory: ``images/ref``, ``images/adv``, ``manifest.{parquet,csv}``,
        ``failures.csv``, ``study.json``, ``ledger.sqlite``. An existing study is
        resumed; it is locked (``study.lock``) while the build runs.
    batch_size : int
        References per work unit.
    keep_failed : bool
        Keep AEs that did not fool the model, flagged ``success=False``.
    seed : int
        Seeds every random start; each unit derives its own seed from it.
    append : bool
        Allow a resumed study to gain cells or sources it was not built with.
    executor : advqa.jobs.Executor, optional
        Where the units run (:func:`advqa.jobs.make_executor`): here by default. Every
        unit's pixels are the same on any executor with the same thread count (see
        :mod:`advqa.jobs.executors`); PNGs, rows and the manifest are written here.
    search : {None, "minimal"}
        None (default): attack at every cell's strength. ``"minimal"``: per cell and
        image, the smallest fooling strength (ε and overshoot in ``[strength / 256,
        strength]``, κ in ``[0, κ]``) or the tightest fooling perceptual budget, by
        ``rounds`` rounds of bisection (:func:`advqa.study.minimal.minimal_strength`);
        rows get ``search = "minimal"``, ``searched``, ``searched_value`` and
        ``bisection_calls``.
    rounds : int
        Bisection rounds of ``search="minimal"``.
    metric : str
        The registered full-reference metric the report ranks the minimal AEs by
        (recorded in ``study.json``'s ``searches``; it does not change the AEs, so it
        is not part of a unit's key). Score the study with it.

    Raises
    ------
    ValueError
        For a bad setting, a label outside the model's classes, a duplicate cell, or a
        resumed study whose settings differ (see :func:`study_document`).
    StudyLockedError
        When another live process is writing the study.
    """
    started = time.perf_counter()
    output = Path(output)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(samples) == 0 and not samples.failures:
        raise ValueError("no images to attack")
    if len(samples) == 0:
        # Every image was unreadable: list them where a build lists failures, make nothing.
        failures = [{"path": f.path, "unit": "", "reason": f.reason} for f in samples.failures]
        output.mkdir(parents=True, exist_ok=True)
        StudyDir(output).write_failures(pd.DataFrame(failures, columns=["path", "unit",
                                                                        "reason"]))
        return BuildSummary(output, pd.DataFrame(), pd.DataFrame(), 0, 0, failures,
                            time.perf_counter() - started, ["no readable image: nothing built"])
    if search is not None and search not in SEARCHES:
        raise ValueError(f"unknown search {search!r}; valid: {', '.join(SEARCHES)}")
    if search is not None and not (isinstance(rounds, int) and rounds >= 0):
        raise ValueError(f"rounds must be an integer >= 0, got {rounds!r}")
    if search is not None:
        from advqa.study.minimal import search_axis

        for spec in grid:
            search_axis(spec)  # refuses a cell with nothing to bisect, before any work
        check_ranking_metric(metric)
    check_unique(grid)
    check_labels(samples, model)
    warn_about_budgets(grid, (3, model.info.input_size, model.info.input_size))
    with StudyLock(output), Ledger(StudyDir(output).ledger_path, "build") as ledger:
        document, notes = study_document(
            output, model, grid, seed=seed, batch_size=batch_size, keep_failed=keep_failed,
            sources=sorted({s.source for s in samples}), append=append,
            resuming=bool(ledger.finished()),
            search=None if search is None else {**search_settings(search, rounds),
                                                "metric": metric})
        StudyDir(output).write_settings(document)
        remove_stale_temporaries(output)
        summary = attack_units(samples, model, grid, output, ledger, batch_size=batch_size,
                            keep_failed=keep_failed, seed=seed,
                            executor=executor or LocalExecutor(), progress=progress,
                            search=search_settings(search, rounds))
    summary.notes = notes
    summary.seconds = time.perf_counter() - started
    return summary


def build_unit(spec: AttackSpec, chunk: list[int], seed: int, *, references: torch.Tensor,
               labels: torch.Tensor, model) -> dict:
    """One work unit, wherever it runs: attack ``references[chunk]`` (8-bit) with the cell
    ``spec`` and measure the quantised AEs. Returns the AEs as 8-bit levels."""
    from advqa.models.registry import on_worker

    model = on_worker(model)
    device = next(model.parameters()).device
    images = (references[chunk].to(torch.float32) / 255).to(device)
    adversarial, prediction, measured, steps = attack_quantised(
        spec.build(seed=seed), model, images, labels[chunk].to(device))
    return {"adversarial": (adversarial * 255).round().to(torch.uint8).cpu(),
            "prediction": prediction.cpu(), "distances": {k: v.cpu() for k, v in
                                                          measured.items()},
            "steps": steps.cpu()}


def search_settings(search: str | None, rounds: int) -> dict | None:
    """What a search run is, for its units' keys and ``study.json``; None for a grid."""
    if search is None:
        return None
    from advqa.study.minimal import LOWER_RATIO

    return {"search": search, "rounds": rounds, "lower": f"upper/{LOWER_RATIO:g}",
            "kappa": "linear from 0", "budget": "threshold"}


def check_ranking_metric(metric: str) -> None:
    """Refuse a ranking metric that is not a registered full-reference one."""
    from advqa.quality import list_metrics

    metrics = list_metrics()
    usable = sorted(name for name, info in metrics.items() if info.full_reference)
    if metric not in metrics or not metrics[metric].full_reference:
        what = "unknown" if metric not in metrics else "no-reference"
        raise ValueError(f"--metric {metric!r} is {what}: the per-image ranking compares each "
                         f"minimal AE with its reference; use one of {', '.join(usable)}")


def minimal_unit(spec: AttackSpec, chunk: list[int], seed: int, rounds: int, *,
                 references: torch.Tensor, labels: torch.Tensor, model) -> dict:
    """One unit of a minimal search: per reference of ``chunk``, the smallest fooling
    strength of the cell ``spec`` in ``[strength / 256, strength]``, and its 8-bit AE."""
    from advqa.models.registry import on_worker
    from advqa.study.minimal import minimal_strength, search_axis

    model = on_worker(model)
    device = next(model.parameters()).device
    images = (references[chunk].to(torch.float32) / 255).to(device)
    result = minimal_strength(model, images, labels[chunk].to(device), search_axis(spec),
                              rounds=rounds, seed=seed)
    measured = distances(images, result.adversarial)
    return {"adversarial": (result.adversarial * 255).round().to(torch.uint8).cpu(),
            "prediction": result.prediction.cpu(),
            "distances": {k: v.cpu() for k, v in measured.items()},
            "steps": result.steps.cpu(), "strength": result.strength, "found": result.found,
            "calls": result.calls}


def plan_units(grid, samples: SampleSet, model_name: str, seed: int,
               batch_size: int, search: dict | None = None) -> list[Unit]:
    """One unit per (grid cell, fixed chunk of ``batch_size`` references); a search's
    units carry its settings in their key and spec."""
    units = []
    for spec in grid:
        for chunk in torch.arange(len(samples)).split(batch_size):
            names = [samples[i].name for i in chunk.tolist()]
            if search is None:
                key = build_key(spec, names, model_name, seed)
                described = spec.describe()
            else:
                key = unit_key(spec.describe(), names, model_name, seed, search)
                described = {**spec.describe(), **search}
            units.append(Unit(key, described, (spec, chunk.tolist(), unit_seed(seed, key))))
    return units


def minimal_rows(rows: list[dict], spec: AttackSpec, result: dict, search: dict) -> list[dict]:
    """Grid-style ``rows`` of a minimal unit turned into minimal rows: their own id and
    path, the attack's strength and parameters as the returned AE ran (the cell's where
    none fooled), what was searched and the value found, the search's columns."""
    from advqa.study.minimal import search_axis

    axis = search_axis(spec)
    for position, row in enumerate(rows):
        found = bool(result["found"][position])
        value = float(result["strength"][position]) if found else axis.upper
        ran = axis.cell(value)
        identifier = f"{row['image']}__{spec.identifier()}-minimal-r{search['rounds']}"
        parameters = {**ran.build().parameters(), "search": "minimal", **axis.describe(),
                      "rounds": search["rounds"]}
        row.update({"id": identifier, "adversarial_path": StudyDir.adversarial_path(identifier),
                    "strength": ran.strength, "parameters": json.dumps(parameters,
                                                                       sort_keys=True),
                    "search": "minimal", "searched": axis.name,
                    "searched_value": axis.recorded(value) if found else math.nan,
                    "bisection_calls": int(result["calls"][position])})
    return rows


def attack_units(samples, model, grid, output: Path, ledger: Ledger, *, batch_size: int,
              keep_failed: bool, seed: int, executor, progress: bool,
              search: dict | None = None) -> BuildSummary:
    """Attack every (cell, chunk) unit not yet finished, on ``executor``; here, write each
    unit's PNGs, commit its rows, and rewrite the manifest."""
    study = StudyDir(output)
    failures = [{"path": f.path, "unit": "", "reason": f.reason} for f in samples.failures]
    references = prepare_references(samples, model, output, batch_size)
    failures += [{"path": f.path, "unit": "", "reason": f.reason}
                 for f in references.samples.failures]
    samples = references.samples
    # The ledger is read once; rows of new units join this copy, keyed by id like the
    # ledger's own table, so the manifest is rewritten without re-reading it each unit.
    recorded = {row["id"]: row for row in ledger.rows()}

    def save(unit, result):
        spec, chunk, seed_of_unit, *_ = unit.args
        outcome = (None, result["prediction"], result["distances"], result["steps"])
        rows = unit_rows(references, model, spec, torch.tensor(chunk), outcome,
                         spec.build(seed=seed_of_unit).parameters())
        if search is not None:
            rows = minimal_rows(rows, spec, result, search)
        for row, levels in zip(rows, result["adversarial"], strict=True):
            if row["success"] or keep_failed:
                write_adversarial(row, levels.to(torch.float32) / 255, output)
        return rows

    def commit(unit, rows):
        recorded.update((row["id"], row) for row in rows)
        study.write_manifest(manifest_frame(list(recorded.values()), keep_failed))

    units = plan_units(grid, samples, model.info.name, seed, batch_size, search)
    from advqa.models.registry import shippable

    shared = {"references": (references.images.cpu() * 255).round().to(torch.uint8),
              "labels": references.labels.cpu(), "model": shippable(model, executor)}
    work = build_unit
    if search is not None:
        units = [Unit(u.key, u.spec, (*u.args, search["rounds"])) for u in units]
        work = minimal_unit
    report = run_units(ledger, units, work, executor=executor, shared=shared,
                          on_result=save, on_commit=commit, progress=progress,
                          description="build")
    for failure in report.failures:
        spec, chunk, *_ = next(u.args for u in units if u.key == failure.key)
        failures += [{"path": samples[i].name, "unit": spec.label(), "reason": failure.error}
                     for i in chunk]
    rows = list(recorded.values())
    lost = missing_files(rows, output, keep_failed)
    if lost:
        warnings.warn(f"{len(lost)} AE file(s) listed in the ledger are missing and are left "
                      "out of the manifest (see failures.csv)", stacklevel=2)
        failures += [{"path": row["adversarial_path"], "unit": row["id"],
                      "reason": "AE file missing"} for row in lost]
        gone = {row["id"] for row in lost}
        rows = [row for row in rows if row["id"] not in gone]
    attempts = manifest_frame(rows, keep_failed=True)
    manifest = manifest_frame(rows, keep_failed)
    study.write_manifest(manifest)
    study.write_failures(pd.DataFrame(failures, columns=["path", "unit", "reason"]))
    summary = BuildSummary(output, manifest, attempts, report.total, report.skipped, failures)
    if len(attempts):
        study.write_success_table(summary.success_table())
    return summary
