"""Gate workflows: fit a fit-for-task gate, evaluate it (Tables IV/V), screen a folder.

Each is one call from Python with the same result as its command (``advqa detect
fit-gate``, ``advqa detect gate-eval``, ``advqa screen``); the commands only parse
their arguments into these calls and print what they return.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from advqa.detect.distortions import DISTORTIONS


@dataclass(frozen=True)
class GateJob:
    """The settings shared by fitting and evaluating a gate (Feng & Cai).

    ``source`` is a sample-set name or an image folder; ``model``/``weights``/``device``
    the victim (:func:`advqa.models.load_classifier`, ``weights=None``: random);
    ``quality`` the no-reference metric of the quality feature and
    ``quality_threshold`` the Baseline-2 / gate threshold on its [0, 1] scale (None:
    no threshold); ``squeeze``/``ws`` add those detectors; ``target_fpr`` sets the
    squeezing threshold; ``norm``/``radius``/``uap_epochs`` the universal
    perturbation and ``uap_images`` how many clean images it is fitted on (None: all;
    else a seeded random subset, see :mod:`advqa.detect.groups` for the paper's
    choice); ``penalty`` the SVM's C; ``distortions`` the distortion types of
    :func:`evaluate_gate`'s distorted group (default all four; ``fit_gate`` makes
    none). JPEG2000 refuses images below 160×160 values, so a Fashion-MNIST
    (1×28×28) run takes ``("blur", "noise", "jpeg")``. ``limit`` keeps the first N
    images of the source (None: all), e.g. for a smoke run.

    Raises
    ------
    ValueError
        For a setting no run could use (checked here, before any work).
    """

    source: str = "imagenet"
    model: str = "efficientnet-lite0"
    weights: str | None = "default"
    device: str | None = None
    quality: str = "dtniq"
    quality_threshold: float | None = 0.3
    squeeze: bool = True
    ws: bool = False
    target_fpr: float = 0.05
    norm: str = "linf"
    radius: float = 10 / 255
    uap_epochs: int = 3
    penalty: float = 1.0
    seed: int = 0
    distortions: tuple[str, ...] = DISTORTIONS
    uap_images: int | None = None
    limit: int | None = None

    def __post_init__(self):
        from advqa.detect.distortions import check_distortions

        object.__setattr__(self, "distortions", check_distortions(self.distortions, None))
        if not self.distortions:
            raise ValueError("distortions must name at least one of "
                             f"{', '.join(DISTORTIONS)}")
        if self.uap_images is not None and (isinstance(self.uap_images, bool) or not isinstance(
                self.uap_images, int) or self.uap_images < 1):
            raise ValueError(f"uap_images must be an integer >= 1 (or None: all clean "
                             f"images), got {self.uap_images!r}")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(
                self.limit, int) or self.limit < 1):
            raise ValueError(f"limit must be an integer >= 1 (or None: every image), got "
                             f"{self.limit!r}")
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"radius must be a finite number > 0, got {self.radius}")
        if not 0 <= self.target_fpr < 1:
            raise ValueError(f"target_fpr must be in [0, 1), got {self.target_fpr}")
        if not (isinstance(self.uap_epochs, int) and self.uap_epochs >= 1):
            raise ValueError(f"uap_epochs must be an integer >= 1, got {self.uap_epochs}")
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {self.norm!r}")
        if not (math.isfinite(self.penalty) and self.penalty > 0):
            raise ValueError(f"penalty must be a finite number > 0, got {self.penalty}")


def _generate(job: GateJob, ledger: Path, *, fooling: int, distortions: bool, executor,
              progress, fooling_ev: dict | None = None):
    """The victim, its quality scale and the generated image groups (``fooling_ev``:
    :class:`GroupSettings` ``fooling_ev_*`` fields without the prefix; None: no Fool_EV)."""
    from advqa.data import load_source
    from advqa.detect.features import QualityScale
    from advqa.detect.groups import GroupSettings, build_groups
    from advqa.models import load_classifier

    model = load_classifier(job.model, weights=job.weights, device=job.device)
    scale = QualityScale.default(job.quality)
    uap = {"radius": job.radius, "norm": job.norm, "epochs": job.uap_epochs}
    if job.uap_images is not None:
        uap["subset"] = job.uap_images
    settings = GroupSettings(
        model=job.model, weights=job.weights, quality=scale.to_json(), squeeze=job.squeeze,
        ws=job.ws, uap=uap, fooling_count=fooling,
        distortions=job.distortions if distortions else (), seed=job.seed, device=job.device,
        **{f"fooling_ev_{name}": value for name, value in (fooling_ev or {}).items()})
    samples = load_source(job.source)
    groups = build_groups(model, samples if job.limit is None else samples[:job.limit],
                          settings, ledger,
                          executor=executor, progress=progress)
    _warn_if_quality_flags_clean(groups, job.quality_threshold, scale)
    return model, scale, groups


def _warn_if_quality_flags_clean(groups, threshold: float | None, scale) -> None:
    """Warn when the quality threshold alone would reject most clean images: the
    metric's registry range was set for natural photos and may not suit the source
    (PIQE scores 28×28 Fashion-MNIST garments ~85 of 100, i.e. 0.15 normalised)."""
    import numpy as np

    if threshold is None or not len(groups.clean):
        return
    quality = groups.clean.features.quality
    share = float((quality < threshold).mean())
    if share > 0.5:
        warnings.warn(
            f"{share:.0%} of the clean images have normalised {scale.metric} quality below "
            f"the threshold {threshold} (median {float(np.median(quality)):.3f}"
            f" on its [{scale.lo:g}, {scale.hi:g}] range): Baseline-2 and the gate will "
            "reject most clean images; consider another --quality or --quality-threshold",
            stacklevel=3)


@dataclass
class FittedGate:
    """What :func:`fit_gate` wrote and how the gate does on its own training images."""

    json_path: Path
    arrays_path: Path
    detectors: list[str]
    signed: bool
    adversarial_flagged: int
    adversarial: int
    clean_flagged: int
    clean: int


def fit_gate(job: GateJob, out: str | Path, *, key: bytes | None = None, executor=None,
             progress=None) -> FittedGate:
    """Generate clean and UAP images, train the gate on them and save it (signed with
    ``key``, see :func:`advqa.detect.read_gate_key`).

    The generation's units are kept in ``<out stem>.ledger.sqlite`` beside the gate,
    so a killed fit resumes.
    """
    from advqa.detect.gate import Gate

    out = Path(out)
    model, scale, groups = _generate(job, out.with_name(f"{out.stem}.ledger.sqlite"),
                                     fooling=0, distortions=False, executor=executor,
                                     progress=progress)
    gate = Gate.from_features(
        groups.clean.features, groups.adversarial.features, scale=scale,
        quality_threshold=job.quality_threshold, use_squeeze=job.squeeze,
        target_fpr=job.target_fpr, use_ws=job.ws, penalty=job.penalty,
        model_name=model.info.name, weights=job.weights, model=model,
        metadata={"source": str(job.source), "uap": groups.summary["uap"],
                  "clean_names": groups.summary["clean_names"]})
    json_path, arrays_path = gate.save(out, key=key)
    return FittedGate(json_path, arrays_path, list(gate.detectors), key is not None,
                      sum(not d.fit for d in gate.decide(groups.adversarial.features)),
                      len(groups.adversarial),
                      sum(not d.fit for d in gate.decide(groups.clean.features)),
                      len(groups.clean))


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def evaluate_gate(job: GateJob, out: str | Path, *, repeats: int = 10, fooling: int = 10,
                  fooling_ev: int = 10, ev_generations: int = 20, ev_population: int = 32,
                  executor=None, progress=None) -> list[Path]:
    """Feng & Cai's Tables II–V and Figure 4 on generated groups; returns the files
    written in ``out`` (its ``ledger.sqlite`` keeps finished units, so a killed run
    resumes).

    ``fooling`` is the number of Fool_GD images (gradient ascent), ``fooling_ev`` of
    Fool_EV images (evolved, direct encoding, ``ev_generations`` generations of
    ``ev_population`` children: far fewer than Nguyen et al.'s thousands, to stay
    within minutes on a CPU); 0 leaves a group out (Fool_GD keeps its empty rows in
    Tables IV/V, as before; Fool_EV has none). The distorted group has
    ``job.distortions`` × 5 levels.

    Scale: on the 10k Fashion-MNIST test split with ``fashion-mnist-cnn`` (≈8,900 clean
    images, 3 distortions: ≈133k distorted images) see ``docs/detection-gate.md`` for
    the measured time per stage on one CPU thread.
    """
    from advqa.detect.fitness_eval import evaluate, write_tables

    _check_count("repeats", repeats, 1)
    _check_count("fooling", fooling, 0)
    _check_count("fooling_ev", fooling_ev, 0)
    _check_count("ev_generations", ev_generations, 1)
    _check_count("ev_population", ev_population, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    evolved = {"count": fooling_ev, "generations": ev_generations,
               "population": ev_population}
    _, _, groups = _generate(job, out / "ledger.sqlite", fooling=fooling, distortions=True,
                             executor=executor, progress=progress, fooling_ev=evolved)
    threshold = 0.3 if job.quality_threshold is None else job.quality_threshold
    result = evaluate(groups, repeats=repeats, seed=job.seed, quality_threshold=threshold,
                      target_fpr=job.target_fpr, penalty=job.penalty,
                      ledger_path=out / "ledger.sqlite", executor=executor,
                      progress=progress is not None)
    settings = {**asdict(job), "repeats": repeats, "fooling": fooling,
                "fooling_ev": fooling_ev, "ev_generations": ev_generations,
                "ev_population": ev_population}
    return write_tables(result, groups, out, settings, progress=progress)


@dataclass
class Screening:
    """What :func:`screen_folder` decided: rows written to ``out``, unreadable files."""

    out: Path
    rows: list[dict]
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failures_path(self) -> Path:
        """``<out stem>.failures.csv``: the unreadable files and why (always written)."""
        return failures_path(self.out)

    @property
    def unfit(self) -> int:
        return sum(row["decision"] == "unfit" for row in self.rows)


def screen_folder(folder: str | Path, gate_path: str | Path, out: str | Path, *,
                  key: bytes | None = None, allow_unsigned: bool = False,
                  recursive: bool = False, batch_size: int = 8,
                  device: str | None = None) -> Screening:
    """Run a gate on every image of ``folder`` and write a CSV of decisions to ``out``.

    Images are decoded one batch at a time; unreadable ones are skipped and listed in
    :attr:`Screening.failures_path`. A folder with no image files at all is an error.
    """
    from advqa.data import ImageReadError, load_folder
    from advqa.detect.gate import Gate

    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a directory: {folder}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    gate = Gate.load(gate_path, key=key, allow_unsigned=allow_unsigned, device=device)
    samples = load_folder(folder, recursive=recursive)
    failures = [(Path(f.path).relative_to(folder).as_posix(), f.reason)
                for f in samples.failures]
    if len(samples) == 0 and not failures:
        raise ValueError(f"no image files in {folder}"
                         + ("" if recursive else " (sub-folders need --recursive)"))
    rows = []
    for start in range(0, len(samples), batch_size):
        images, names = [], []
        for sample in samples[start:start + batch_size]:
            relative = Path(sample.path).relative_to(folder).as_posix()
            try:
                images.append(sample.image)
                names.append(relative)
            except (ImageReadError, OSError, ValueError) as error:
                failures.append((relative, str(error)))
        for name, decision in zip(names, gate.check(images) if images else [], strict=True):
            rows.append({"path": name, "decision": decision.label,
                         "reasons": "; ".join(decision.reasons),
                         "prediction": decision.prediction,
                         **{k: f"{value:.6g}" for k, value in decision.scores.items()}})
    _write_decisions(out, rows)
    _write_failures(failures_path(out), failures)
    return Screening(out, rows, failures)


def failures_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.failures.csv")


def _write_failures(path: Path, failures: list[tuple[str, str]]) -> None:
    from advqa.data import atomic_write_bytes

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "reason"])
    writer.writerows(failures)
    atomic_write_bytes(path, buffer.getvalue().encode())


def _write_decisions(out: Path, rows: list[dict]) -> None:
    from advqa.data import atomic_write_bytes

    columns = ["path", "decision", "reasons", "prediction"]
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out, buffer.getvalue().encode())
