"""The IQA-metric robustness benchmark: its work units, phases and outputs.

A benchmark attacks every chosen metric with every chosen attack on a test
image set, following the protocol of the MSU Metrics Robustness Benchmark
(Antsiferova et al., AAAI 2024). It runs in three phases, each a set of
independent units that the job engine (:mod:`advqa.jobs`) runs here, in local
processes or on a Dask cluster:

1. per metric: its calibration range on the training images and its clean
   scores on the test images (each clean image is scored once, for all attacks);
2. per (metric, UAP kind): train the universal perturbation on the training
   images and save it as an artefact under ``<out>/uaps/``;
3. per work unit (metric, attack[, amplitude][, step]): attack the whole test
   set in batches and score the results. The iterative attacks
   (:data:`STEPPED_ATTACKS`) run once per step size of ``Settings.step_sizes``,
   each step its own unit, so that the leaderboard can rank each at its
   strongest step, as the benchmark's supplementary material tunes each attack.

Every finished unit is committed to ``<out>/benchmark.sqlite`` (a
:class:`advqa.jobs.Ledger`; jobs ``benchmark-calibrate``, ``benchmark-uap`` and
``benchmark``) together with its rows in one transaction, so a killed run resumes
where it stopped without duplicating or losing rows. The per-item table has one
row per (image, unit); ``gain`` is the change of the metric in its "better" direction, so a positive
gain means the attack fooled the metric.

Every setting is stored in the ledger on the first run and a rerun with other
settings in the same folder is refused (the step grid and the MI-FGSM form
included); unit keys name the metric, attack, amplitude and step. The
robustness-score variant is not a setting of the units: it only changes how the
leaderboard scores the stored items, which are rescored from scratch each time.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from advqa.attacks.base import frozen
from advqa.jobs import Ledger, LocalExecutor, run_units, unit_key, worker_cache
from advqa.jobs import Unit as JobUnit
from advqa.robustness.mifgsm import MIFGSM_FORMS
from advqa.robustness.objective import MetricObjective, jpeg_copy
from advqa.study.store import write_table

UAP_ATTACKS = ("cumulative-uap", "optimized-uap", "generative-uap")
PER_IMAGE_ATTACKS = ("fgsm", "ifgsm", "mifgsm", "amifgsm", "korhonen", "madc")
ATTACK_NAMES = PER_IMAGE_ATTACKS + UAP_ATTACKS
# The attacks that take the step size α: each runs once per step of the grid.
STEPPED_ATTACKS = ("ifgsm", "mifgsm", "amifgsm", "korhonen")
# Video: "frame" attacks every frame on its own (the MSU benchmark), "clip" gives each clip
# one perturbation shared by all its frames (advqa.robustness.video).
TEMPORAL_MODES = ("frame", "clip")
ITEM_COLUMNS = ["image", "dataset", "attack", "amplitude", "step", "metric", "clean",
                "attacked", "gain", "psnr", "ssim", "mse", "radius", "error"]


@dataclass(frozen=True)
class Settings:
    """Attack settings shared by every unit; defaults are the public benchmark's.

    ``eps`` bounds the L∞ change of the per-image attacks (AMI-FGSM bounds it by
    1/NIQE instead; MADC keeps its own settings, see :class:`advqa.attacks.madc.MADC`),
    ``steps`` and ``step_sizes`` drive the iterative ones (:data:`STEPPED_ATTACKS`;
    each runs once per step size of the grid and the leaderboard ranks it at its
    strongest), ``momentum`` MI- and AMI-FGSM, ``mifgsm_form`` their momentum term
    (``"msu"``, the benchmark's, or ``"dong"``; see :mod:`advqa.robustness.mifgsm`),
    ``amplitudes`` scale the UAPs, ``uap_eps`` bounds a UAP before scaling,
    ``jpeg_quality`` makes the distorted start of a full-reference metric. ``uap``
    holds extra UAP training options (epochs, lr…). Step sizes are in [0, 1] pixel
    units; :func:`parse_step_sizes` reads ``"0.25/255,0.5/255,1/255"``. ``temporal``
    (video only): ``"frame"`` attacks every frame on its own, ``"clip"`` gives each clip
    one perturbation (:mod:`advqa.robustness.video`); it enters the stored settings only
    when it is ``"clip"``, so image runs keep their keys.

    Raises
    ------
    ValueError
        For a count below 1 (``steps``, ``batch_size``, UAP ``epochs``…), a
        bound or step that is not a finite number > 0, no step size or the same
        one twice, a negative momentum or amplitude, no amplitude, an unknown
        MI-FGSM form, or a JPEG quality outside 1–100: such a run would fail
        every unit, or silently attack with nothing.

    Warns
    -----
    UserWarning
        For a step size above 1: in [0, 1] units that moves a pixel across its
        whole range in one step (probably meant in 0–255 units, e.g. ``1/255``).
    """

    eps: float = 10 / 255
    steps: int = 10
    step_sizes: tuple[float, ...] = (1 / 255,)
    momentum: float = 1.0
    mifgsm_form: str = "dong"
    amplitudes: tuple[float, ...] = (0.2, 0.4, 0.8)
    uap_eps: float = 0.1
    jpeg_quality: int = 80
    batch_size: int = 8
    seed: int = 0
    uap: dict = field(default_factory=dict, hash=False)
    temporal: str = "frame"

    def __post_init__(self):
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {', '.join(TEMPORAL_MODES)}, "
                             f"got {self.temporal!r}")
        for name in ("eps", "uap_eps"):
            _check_number(name, getattr(self, name), low=0.0, strict=True)
        object.__setattr__(self, "step_sizes", check_step_sizes(self.step_sizes))
        for step in self.step_sizes:
            if step > 1:
                warnings.warn(f"step size {step:g} is above 1: in [0, 1] pixel units one step "
                              f"crosses the whole range; did you mean {step:g}/255?",
                              stacklevel=3)
        if self.mifgsm_form not in MIFGSM_FORMS:
            raise ValueError(f"mifgsm_form must be one of {', '.join(MIFGSM_FORMS)}, "
                             f"got {self.mifgsm_form!r}")
        _check_number("momentum", self.momentum, low=0.0)
        for name in ("steps", "batch_size"):
            _check_count(name, getattr(self, name))
        if not 1 <= _check_count("jpeg_quality", self.jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must lie in 1..100, got {self.jpeg_quality!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if isinstance(self.amplitudes, str) or not len(self.amplitudes):
            raise ValueError(f"amplitudes must be a non-empty sequence of numbers, "
                             f"got {self.amplitudes!r}")
        for amplitude in self.amplitudes:
            _check_number("every amplitude", amplitude, low=0.0)
        if not isinstance(self.uap, dict):
            raise ValueError(f"uap must be a dict of UAP training options, got {self.uap!r}")
        for name in ("epochs", "batch_size", "size", "width", "depth"):
            if name in self.uap:
                _check_count(f"uap[{name!r}]", self.uap[name])
        if "lr" in self.uap:
            _check_number("uap['lr']", self.uap["lr"], low=0.0, strict=True)

    def describe(self) -> dict:
        described = {**asdict(self), "amplitudes": list(self.amplitudes),
                     "step_sizes": list(self.step_sizes)}
        if self.temporal == "frame":  # the image benchmark's settings stay as they were
            del described["temporal"]
        return described


def step_label(step: float) -> str:
    """A step size in grey levels, ``"0.25/255"``: how the grid is written and keyed."""
    return f"{step * 255:.6g}/255"


def parse_step(text: str) -> float:
    """``"0.25/255"``, ``"1/255"``, ``"0.002"`` or ``"1e-3"`` as a float; ValueError otherwise."""
    text = str(text).strip()
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            value = float(numerator) / float(denominator)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"not a step size: {text!r} (write e.g. 0.5/255 or 0.002)") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"step size {text!r} must be a finite number > 0, got {value:g}")
    return value


def parse_step_sizes(text: str) -> tuple[float, ...]:
    """A comma-separated step grid, ``"0.25/255,0.5/255,1/255"``, parsed and checked
    (a step above 1 is only warned about, by :class:`Settings`).

    Raises
    ------
    ValueError
        For an entry that is not a number or fraction, or not finite and > 0, an
        empty grid or a step given twice (see :func:`check_step_sizes`).
    """
    steps = tuple(parse_step(part) for part in str(text).split(",") if part.strip())
    if not steps:
        raise ValueError(f"no step size in {text!r} (write e.g. 0.25/255,0.5/255,1/255)")
    return check_step_sizes(steps)


def check_step_sizes(steps) -> tuple[float, ...]:
    """The grid as a tuple of floats, each finite and > 0, no two with the same label."""
    if isinstance(steps, str | bytes) or not hasattr(steps, "__len__") or not len(steps):
        raise ValueError(f"step_sizes must be a non-empty sequence of numbers, got {steps!r}")
    grid = tuple(_check_number("step size", step, low=0.0, strict=True)
                 for step in steps)
    labels = [step_label(step) for step in grid]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"step size {', '.join(repeated)} given twice in the grid "
                         f"{', '.join(labels)}")
    return grid


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _check_number(name: str, value, *, low: float, strict: bool = False) -> float:
    """``value`` as a finite float >= ``low`` (> ``low`` when ``strict``), else ValueError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < low or (
            strict and number == low):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {relation} {low:g}, got {value!r}")
    return number


@dataclass(frozen=True)
class ImageSet:
    """A named batch of equally sized images: ``images`` is (N, C, H, W) in [0, 1].

    The frames of video clips are one too (:func:`advqa.robustness.video.load_clip_set`):
    clip after clip, each frame named ``<clip>#f<index>``, and ``clips`` holds each clip's
    ``(name, first, stop)`` range of rows; empty for images.
    """

    dataset: str
    names: tuple[str, ...]
    images: torch.Tensor = field(hash=False, compare=False)
    clips: tuple[tuple[str, int, int], ...] = field(default=(), hash=False, compare=False)


@dataclass(frozen=True)
class Unit:
    """One work unit: a metric, an attack and, for a UAP, its amplitude; for an
    iterative attack (:data:`STEPPED_ATTACKS`), its step size; on video, the chunk of
    whole clips it attacks (``frames``: its ``[first, stop)`` rows of the test frames)."""

    metric: str
    attack: str
    amplitude: float | None = None
    step: float | None = None
    frames: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        amplitude = "" if self.amplitude is None else f"@{self.amplitude:g}"
        step = "" if self.step is None else f"~{step_label(self.step)}"
        chunk = "" if self.frames is None else f"#frames{self.frames[0]}-{self.frames[1]}"
        return f"{self.metric}|{self.attack}{amplitude}{step}{chunk}"


@dataclass(frozen=True)
class MetricFacts:
    """What phase 1 learns about a metric."""

    metric: str
    low: float
    high: float
    higher_is_better: bool
    full_reference: bool

    @property
    def span(self) -> float:
        return self.high - self.low


def plan_units(metrics, attacks, amplitudes, step_sizes=(1 / 255,), chunks=None) -> list[Unit]:
    """Every (metric, attack[, amplitude][, step][, clip chunk]) unit, metrics outermost;
    ``chunks``, the ``(first, stop)`` frame ranges of chunks of whole clips, splits each
    unit of a video benchmark."""
    unknown = [name for name in attacks if name not in ATTACK_NAMES]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; valid names: {', '.join(ATTACK_NAMES)}")
    units = []
    for metric in metrics:
        for attack in attacks:
            if attack in UAP_ATTACKS:
                units += [Unit(metric, attack, float(amplitude)) for amplitude in amplitudes]
            elif attack in STEPPED_ATTACKS:
                units += [Unit(metric, attack, step=float(step)) for step in step_sizes]
            else:
                units.append(Unit(metric, attack))
    if chunks:
        units = [Unit(unit.metric, unit.attack, unit.amplitude, unit.step, tuple(chunk))
                 for unit in units for chunk in chunks]
    return units


# ---------------------------------------------------------------- worker side
# Everything below runs on a worker; its worker_cache keeps the metrics it has built,
# so units of the same metric do not rebuild them.

def attackable_metric(name: str):
    from advqa.quality.plugins import load_metric

    metric = load_metric(name)
    metric.requires_grad_(False)
    return metric.eval()


def cached_metric(name: str):
    return worker_cache(attackable_metric, name)


def quality_pair():
    from advqa.quality import get_metric

    return get_metric("psnr"), get_metric("ssim")


def cached_quality_pair():
    return worker_cache(quality_pair)


def start_images(facts: MetricFacts, images: torch.Tensor, settings: Settings) -> torch.Tensor:
    """An attack's start: the image, or its JPEG copy for a full-reference metric."""
    return jpeg_copy(images, quality=settings.jpeg_quality) if facts.full_reference else images


def score_isolated(metric, facts: MetricFacts, images, references) -> list[tuple]:
    """Scores of a batch; when the batch fails, image by image so that one bad image
    fails alone. Returns (value, error) per image."""
    def score(distorted, pristine):
        with torch.no_grad():
            values = metric(distorted, pristine) if facts.full_reference else metric(distorted)
        return [float(value) for value in values.reshape(-1).cpu()]

    try:
        values = score(images, references)
    except Exception:  # isolate the culprit below
        values = None
    if values is None or len(values) != len(images):
        results = []
        for index in range(len(images)):
            try:
                results.append((score(images[index:index + 1], references[index:index + 1])[0],
                                None))
            except Exception as failure:
                results.append((math.nan, f"{type(failure).__name__}: {failure}"))
        return [(value, error or finite_error(value)) for value, error in results]
    return [(value, finite_error(value)) for value in values]


def finite_error(value: float) -> str | None:
    return None if math.isfinite(value) else "non-finite score"


def prepare_metric(metric_name: str, train: ImageSet, test: ImageSet, settings: Settings):
    """Phase 1: calibration range on the training images and clean test scores."""
    from advqa.robustness.calibration import default_cache, metric_range

    metric = cached_metric(metric_name)
    low, high = metric_range(metric, train.images, batch_size=settings.batch_size,
                             cache=default_cache())
    facts = MetricFacts(metric_name, low, high, metric.info.higher_is_better,
                        metric.info.full_reference)
    clean = []
    for start in range(0, len(test.images), settings.batch_size):
        pristine = test.images[start:start + settings.batch_size]
        clean += score_isolated(metric, facts, start_images(facts, pristine, settings), pristine)
    return facts, clean


def train_unit(metric_name: str, attack: str, train: ImageSet, facts: MetricFacts,
               settings: Settings):
    """Phase 2: one universal perturbation for (metric, UAP kind)."""
    from advqa.robustness.uap import train_uap

    metric = cached_metric(metric_name)
    return train_uap(attack.removesuffix("-uap"), metric, train.images,
                     metric_range=facts.span, jpeg_quality=settings.jpeg_quality,
                     eps=settings.uap_eps, seed=settings.seed, progress=False,
                     **settings.uap)


def per_image_attack(name: str, settings: Settings, step: float | None = None,
                     radius=None):
    """The attack ``name`` at ``step`` (default: the grid's first) with ``settings``;
    ``radius`` overrides AMI-FGSM's 1/NIQE (a callable images -> (N,) radii)."""
    from advqa.attacks import get_attack
    from advqa.robustness.mifgsm import MIFGSM

    common = {"eps": settings.eps, "seed": settings.seed}
    step = settings.step_sizes[0] if step is None else step
    if name == "fgsm":
        return get_attack("fgsm", norm="linf", **common)
    if name == "ifgsm":
        return get_attack("bim", norm="linf", steps=settings.steps, step_size=step, **common)
    if name == "mifgsm":
        return MIFGSM(form=settings.mifgsm_form, norm="linf", steps=settings.steps,
                      step_size=step, decay=settings.momentum, **common)
    if name == "amifgsm":
        from advqa.robustness.amifgsm import AMIFGSM

        return AMIFGSM(steps=settings.steps, step_size=step, decay=settings.momentum,
                       form=settings.mifgsm_form, radius=radius, seed=settings.seed)
    if name == "korhonen":
        return get_attack("korhonen", steps=settings.steps, step_size=step, **common)
    if name == "madc":
        # MADC holds the MSE of its own small first step (the public script's 0.001,
        # 8 steps); the shared ε of 10/255 would set an MSE level that wrecks the image.
        return get_attack("madc", seed=settings.seed)
    raise ValueError(f"unknown per-image attack {name!r}; valid: {', '.join(PER_IMAGE_ATTACKS)}")


def attack_batch(unit: Unit, metric, facts: MetricFacts, start, pristine, settings, uap):
    """The attacked batch and, for AMI-FGSM, each image's L∞ radius 1/NIQE (else None)."""
    if unit.attack in UAP_ATTACKS:
        from advqa.robustness.uap import apply_uap

        return apply_uap(start, uap, unit.amplitude), None
    if settings.temporal == "clip":
        from advqa.robustness.video import attack_clip

        return attack_clip(unit, metric, facts, start, pristine, settings)
    radius = None
    if unit.attack == "amifgsm":
        from advqa.robustness.amifgsm import niqe_radius

        # Computed here once so that the items can record it (the leaderboard tells
        # from it whether the ball ever bound); the attack uses exactly these radii.
        radius = niqe_radius(start).reshape(-1)
    objective = MetricObjective(metric, metric_range=facts.span,
                                references=pristine if facts.full_reference else None)
    attack = per_image_attack(unit.attack, settings, unit.step,
                              radius=None if radius is None else (lambda images: radius))
    with frozen(metric), torch.enable_grad():
        adversarial, _ = attack.perturb(objective, start)
    return adversarial.detach(), None if radius is None else radius.tolist()


def visibility(attacked: torch.Tensor, start: torch.Tensor) -> dict[str, list[float]]:
    """PSNR, SSIM and MSE of each attacked image against its own starting point."""
    psnr, ssim = cached_quality_pair()
    with torch.no_grad():
        return {"psnr": psnr(attacked, start).tolist(), "ssim": ssim(attacked, start).tolist(),
                "mse": ((attacked - start) ** 2).mean(dim=(1, 2, 3)).tolist()}


def run_unit(unit: Unit, test: ImageSet, facts: MetricFacts, clean, settings: Settings,
             uap=None) -> list[dict]:
    """Phase 3: attack the test set for one unit; one row per image."""
    metric = cached_metric(unit.metric)
    direction = 1.0 if facts.higher_is_better else -1.0
    rows = []
    for start, stop in unit_batches(unit, test, settings):
        pristine = test.images[start:stop]
        begin = start_images(facts, pristine, settings)
        names = test.names[start:stop]
        outcomes = attack_isolated(unit, metric, facts, begin, pristine, settings, uap)
        done = [index for index, (_, error, _) in enumerate(outcomes) if error is None]
        scores, seen = {}, {}
        if done:
            attacked = torch.stack([outcomes[index][0] for index in done])
            values = score_isolated(metric, facts, attacked, pristine[done])
            measured = visibility(attacked, begin[done])
            for position, index in enumerate(done):
                scores[index] = values[position]
                seen[index] = {name: column[position] for name, column in measured.items()}
        for index, name in enumerate(names):
            score = scores.get(index, (math.nan, outcomes[index][1]))
            rows.append(item_row(unit, test.dataset, name, clean[start + index], score,
                                 direction, seen.get(index), outcomes[index][2]))
    return rows


def unit_batches(unit: Unit, test: ImageSet, settings: Settings) -> list[tuple[int, int]]:
    """The ``[start, stop)`` rows a unit attacks together: batches of
    ``settings.batch_size`` images; on video, within the unit's chunk, and one clip per
    batch when the clip shares one perturbation (``settings.temporal == "clip"``)."""
    first, last = unit.frames if unit.frames is not None else (0, len(test.images))
    if settings.temporal == "clip" and unit.attack in PER_IMAGE_ATTACKS:
        return [(begin, stop) for _, begin, stop in test.clips if first <= begin < last]
    return [(start, min(start + settings.batch_size, last))
            for start in range(first, last, settings.batch_size)]


def attack_isolated(unit, metric, facts, begin, pristine, settings, uap):
    """The attacked batch as (image, None, radius) triples; when the batch fails, image
    by image, so that one image the metric cannot handle fails alone: (None, reason,
    None). ``radius`` is AMI-FGSM's 1/NIQE of the image, None for other attacks."""
    try:
        images, radii = attack_batch(unit, metric, facts, begin, pristine, settings, uap)
        radii = radii or [None] * len(images)
        return [(image, None, radius) for image, radius in zip(images, radii, strict=True)]
    except Exception:  # isolate the culprit below
        pass
    results = []
    for index in range(len(begin)):
        try:
            attacked, radii = attack_batch(unit, metric, facts, begin[index:index + 1],
                                           pristine[index:index + 1], settings, uap)
            results.append((attacked[0], None, radii[0] if radii else None))
        except Exception as failure:
            results.append((None, f"attack failed: {type(failure).__name__}: {failure}", None))
    return results


def item_row(unit, dataset, name, clean, attacked, direction, seen, radius=None) -> dict:
    (clean_value, clean_error), (value, error) = clean, attacked
    gain = direction * (value - clean_value)
    return {
        "id": f"{unit.key}|{dataset}|{name}", "image": name, "dataset": dataset,
        "attack": unit.attack, "amplitude": unit.amplitude, "step": unit.step,
        "metric": unit.metric, "clean": none_if_nan(clean_value),
        "attacked": none_if_nan(value), "gain": none_if_nan(gain),
        "psnr": none_if_nan(seen["psnr"]) if seen else None,
        "ssim": none_if_nan(seen["ssim"]) if seen else None,
        "mse": none_if_nan(seen["mse"]) if seen else None,
        "radius": None if radius is None else none_if_nan(float(radius)),
        "error": f"clean: {clean_error}" if clean_error else error,
    }


def none_if_nan(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------- ledger

def metric_row(dataset: str, facts: MetricFacts, clean: list) -> dict:
    """Phase 1's row for a metric: its facts and clean scores (NaN stored as None)."""
    return {"id": facts.metric, "dataset": dataset, "facts": asdict(facts),
            "clean": [[value if math.isfinite(value) else None, error]
                      for value, error in clean]}


def restore_clean(clean: list) -> list[tuple[float, str | None]]:
    return [(math.nan if value is None else value, error) for value, error in clean]


def export_items(ledger: Ledger, out: Path) -> pd.DataFrame:
    rows = ledger.rows()
    items = pd.DataFrame(rows, columns=["id", *ITEM_COLUMNS]).drop(columns="id")
    items = items.astype({"amplitude": "float64", "step": "float64", "clean": "float64",
                          "attacked": "float64", "gain": "float64", "psnr": "float64",
                          "ssim": "float64", "mse": "float64", "radius": "float64"})
    write_table(items, out / "items")
    return items



# ---------------------------------------------------------------- orchestration

@dataclass
class BenchmarkSummary:
    """What a run produced: the per-item table, the metrics' facts and what failed.

    ``failures`` lists the metrics that could not be calibrated and the UAPs that
    could not be trained; ``failed_units`` the units in which every image failed. On
    video, ``items`` holds a row per frame and ``clips`` a row per clip.
    """

    out: Path
    items: pd.DataFrame
    facts: dict[str, MetricFacts]
    failures: list[str]
    paths: dict[str, Path]
    failed_units: list[str] = field(default_factory=list)
    clips: pd.DataFrame | None = None  # video: one row per (unit, clip), what is ranked

    @property
    def all_failed(self) -> bool:
        """True when no attacked image was scored: every unit failed, or none could run."""
        return not len(self.items) or bool(self.items.error.notna().all())


def failed_units(items: pd.DataFrame) -> list[str]:
    """``"metric|attack[@amplitude][~step]: …"`` for each unit whose every row has an error."""
    found = []
    if not len(items):
        return found
    for (metric, attack, amplitude, step), rows in items.groupby(
            ["metric", "attack", "amplitude", "step"], dropna=False, sort=True):
        if rows.error.notna().all():
            unit = Unit(metric, attack, None if pd.isna(amplitude) else float(amplitude),
                        None if pd.isna(step) else float(step))
            found.append(f"{unit.key}: all {len(rows)} image(s) failed, e.g. "
                         f"{rows.error.iloc[0]}")
    return found


def load_image_set(spec, *, size: int = 256, dataset: str | None = None) -> ImageSet:
    """A sample-set name, an image folder or a NIPS 2017 folder, resized (shorter side)
    and centre-cropped to ``size``², RGB."""
    from advqa.data import load_source, preprocess

    samples = load_source(spec)
    if not len(samples.samples):
        raise ValueError(f"{spec}: no readable images")
    return ImageSet(dataset or Path(str(spec)).name, tuple(samples.names),
                    preprocess(samples, size=size))


def split_image_set(images: ImageSet, *, train_fraction: float = 0.5,
                    seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """A seeded random split into training images (for UAPs, calibration) and test images."""
    count = len(images.names)
    if count < 2:
        raise ValueError(f"{images.dataset}: need at least 2 images to split, got {count}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = min(max(1, round(train_fraction * count)), count - 1)

    def subset(indices, suffix):
        return ImageSet(f"{images.dataset}-{suffix}", tuple(images.names[i] for i in indices),
                        images.images[indices])

    return subset(order[:cut], "train"), subset(order[cut:], "test")


def prepare_task(metric_name: str, *, train: ImageSet, test: ImageSet, settings: Settings):
    return prepare_metric(metric_name, train, test, settings)


def train_task(metric_name: str, attack: str, facts: MetricFacts, *, train: ImageSet,
               settings: Settings):
    return train_unit(metric_name, attack, train, facts, settings)


def unit_task(unit: Unit, facts: MetricFacts, clean, uap, *, test: ImageSet,
              settings: Settings):
    return run_unit(unit, test, facts, clean, settings, uap)


def run_benchmark(metrics, attacks, train: ImageSet, test: ImageSet, out, *,
                  settings: Settings | None = None, r_score: str = "paper", executor=None,
                  progress: bool = True, pooling: str = "mean",
                  clips_per_unit: int = 1) -> BenchmarkSummary:
    """Attack ``metrics`` with ``attacks`` on ``test`` (UAPs trained on ``train``).

    Parameters
    ----------
    metrics : sequence of str
        Registry names, ``pyiqa:<name>``, plug-in entry points or ``module:Class``.
    attacks : sequence of str
        From :data:`ATTACK_NAMES`.
    train, test : ImageSet
        Calibration/UAP training images and the images attacked.
    out : path
        Output folder; holds ``benchmark.sqlite``, so rerunning resumes.
    settings : Settings, optional
        Attack settings (the public benchmark's defaults).
    r_score : {"paper", "msu"}, default "paper"
        Robustness-score variant of the leaderboard
        (:data:`advqa.robustness.scores.ROBUSTNESS_VARIANTS`). Not stored with the
        settings: rerunning a finished folder with the other variant rescores the
        same items without attacking again.
    executor : advqa.jobs.Executor, optional
        Where units run (:func:`advqa.jobs.make_executor`); in this process by default.
    pooling : str
        Video only (``test.clips``): how a clip's frame scores make its score
        (:func:`advqa.quality.video.pool_frames`: ``mean``, ``harmonic``,
        ``percentile``). The items table keeps a row per frame; ``clips.{parquet,csv}``
        a row per clip, which the leaderboard ranks.
    clips_per_unit : int
        Video only: whole clips per work unit (units are (metric, attack, clip chunk)).

    Returns
    -------
    BenchmarkSummary
        A failing image or unit does not stop the run: see its ``failures``,
        ``failed_units`` and ``all_failed``.
    """
    from advqa.robustness.calibration import fingerprint
    from advqa.robustness.scores import check_r_score

    settings = settings or Settings()
    check_r_score(r_score)
    if not metrics or not attacks:
        raise ValueError(f"nothing to run: {len(metrics)} metric(s), {len(attacks)} attack(s)")
    executor = executor or LocalExecutor()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    video = bool(test.clips)
    if not video and settings.temporal != "frame":
        raise ValueError(f"temporal={settings.temporal!r} needs video clips (a test set "
                         "with clips, advqa.robustness.video.load_clip_set)")
    if video:
        from advqa.robustness.video import check_video_run, clip_chunks

        check_video_run(attacks, settings, pooling, clips_per_unit)
    chunks = clip_chunks(test.clips, clips_per_unit) if video else None
    units = plan_units(metrics, attacks, settings.amplitudes, settings.step_sizes, chunks)
    path = out / "benchmark.sqlite"
    stored = {"settings": settings.describe(), "size": list(test.images.shape[1:]),
              "train": fingerprint(train.images), "test": fingerprint(test.images)}
    if video:  # what makes a video run's units and clip rows (images' keys unchanged)
        stored.update(clips=[list(clip) for clip in test.clips], pooling=pooling,
                      clips_per_unit=clips_per_unit)
    with Ledger(path, "benchmark") as ledger:
        ledger.check_settings(stored, hint="use another --out folder or the stored settings")
        failures: list[str] = []
        jobs = {"executor": executor, "progress": progress}
        prepared = prepare_metrics(path, metrics, train, test, settings, failures, **jobs)
        if video:
            from advqa.robustness.video import check_pooling

            check_pooling(pooling, prepared)  # before any attack, not after them all
        uaps = train_uaps(path, out, units, prepared, train, settings, failures, **jobs)
        attack_units(ledger, units, prepared, uaps, test, settings, failures, **jobs)
        items = export_items(ledger, out)
        ranked = items
        if video:
            from advqa.robustness.video import clip_items

            ranked = clip_items(items, test, pooling, prepared)
            write_table(ranked, out / "clips")
        paths = write_outputs(ranked, prepared, out, settings, r_score,
                              {"pooling": pooling} if video else None)
        if video:
            paths["clips"] = out / "clips.parquet"
    return BenchmarkSummary(out, items, {name: facts for name, (facts, _) in prepared.items()},
                            failures, paths, failed_units(items),
                            clips=ranked if video else None)


def prepare_metrics(path, metrics, train, test, settings, failures, *, executor,
                    progress) -> dict:
    """Phase 1: one unit per metric, its calibration range and clean test scores."""
    names = list(dict.fromkeys(metrics))
    units = [JobUnit(unit_key("calibrate", name, test.dataset), {"metric": name}, (name,))
             for name in names]
    with Ledger(path, "benchmark-calibrate") as ledger:
        report = run_units(ledger, units, prepare_task, executor=executor,
                           shared={"train": train, "test": test, "settings": settings},
                           on_result=lambda unit, result: [metric_row(test.dataset, *result)],
                           progress=progress, description="calibrate")
        rows = {row["id"]: row for row in ledger.rows() if row["dataset"] == test.dataset}
    failures += [f"metric {failure.spec['metric']}: {failure.error}"
                 for failure in report.failures]
    return {name: (MetricFacts(**rows[name]["facts"]), restore_clean(rows[name]["clean"]))
            for name in names if name in rows}


def uap_path(out: Path, metric: str, attack: str) -> Path:
    safe = "".join(character if character.isalnum() or character in "-_." else "_"
                   for character in metric)
    return out / "uaps" / f"{attack}-{safe}.npy"


def train_uaps(path, out, units, prepared, train, settings, failures, *, executor,
               progress) -> dict:
    """Phase 2: load the finished UAP artefacts, train the missing ones.

    The artefacts are the record: an artefact half-written by a killed run,
    damaged, or made from other training images is reported, removed and trained
    again (:func:`advqa.robustness.uap.recover_uap`); it is never used.
    """
    from advqa.robustness.calibration import fingerprint
    from advqa.robustness.uap import recover_uap

    needed = sorted({(unit.metric, unit.attack) for unit in units
                     if unit.attack in UAP_ATTACKS and unit.metric in prepared})
    uaps, missing = {}, []
    images = fingerprint(train.images) if needed else None
    for metric, attack in needed:
        found = recover_uap(uap_path(out, metric, attack), kind=attack,
                            training_fingerprint=images)
        if found is not None:
            uaps[metric, attack] = found.perturbation
        else:
            missing.append(JobUnit(unit_key("uap", metric, attack), {"metric": metric,
                                   "attack": attack}, (metric, attack, prepared[metric][0])))

    def save(unit, uap):
        metric, attack, _ = unit.args
        uap.save(uap_path(out, metric, attack))
        uaps[metric, attack] = uap.perturbation
        return [{"id": f"{metric}|{attack}"}]

    with Ledger(path, "benchmark-uap") as ledger:
        ledger.forget(unit.key for unit in missing)  # their artefact is gone: train again
        report = run_units(ledger, missing, train_task, executor=executor,
                           shared={"train": train, "settings": settings}, on_result=save,
                           progress=progress, description="train UAPs")
    failures += [f"{failure.spec['attack']} on {failure.spec['metric']}: {failure.error}"
                 for failure in report.failures]
    return uaps


def attack_units(ledger, units, prepared, uaps, test, settings, failures, *, executor,
                 progress) -> None:
    """Phase 3: every (metric, attack[, amplitude][, step]) unit whose inputs are ready."""
    ready = []
    for unit in units:
        if unit.metric in prepared and (
                unit.attack not in UAP_ATTACKS or (unit.metric, unit.attack) in uaps):
            facts, clean = prepared[unit.metric]
            ready.append(JobUnit(unit.key, asdict(unit),
                                 (unit, facts, clean, uaps.get((unit.metric, unit.attack)))))
    report = run_units(ledger, ready, unit_task, executor=executor,
                       shared={"test": test, "settings": settings}, progress=progress,
                       description="attack")
    failures += [f"{failure.key}: {failure.error}" for failure in report.failures]


def write_outputs(items: pd.DataFrame, prepared: dict, out: Path, settings: Settings,
                  r_score: str = "paper", extra: dict | None = None) -> dict[str, Path]:
    from advqa.robustness.leaderboard import write_leaderboard

    ranges = {name: (facts.low, facts.high, facts.higher_is_better)
              for name, (facts, _) in prepared.items()}
    paths = {"items": out / "items.parquet"}
    if len(items.dropna(subset=["attacked"])):
        written = write_leaderboard(items, ranges, out, r_score=r_score,
                                    settings={**settings.describe(), **(extra or {})})
        paths.update(written if isinstance(written, dict) else {})
    return paths
