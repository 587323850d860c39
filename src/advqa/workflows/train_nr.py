"""Training DTNIQ-f (:mod:`advqa.quality.dtniq`) on any MOS table, and a constructed set.

:func:`train_nr` reads a MOS table (CSV: ``image``, ``mos``, optional ``std`` and
``source``; image paths relative to the table), bins the MOS into 70 classes over
the table's MOS range (or ``mos_range``), holds out a fraction of the SOURCE images
(every distorted version of a held-out source is held out: no content is in both
parts), extracts the frozen backbone's features once per patch, trains the head on
those cached features (every patch carries its image's class, as in the paper),
and reports SROCC/PLCC on the held-out images with
:func:`advqa.evaluate.correlation.correlations`. It writes the head's state dict
(float16 by default; loadable with ``weights_only=True``) and a JSON sidecar.

Without a ``source`` column an image's source is the part of its file name before
the first ``_`` (TID2013's ``i01_01_1.bmp`` → ``i01``).

:func:`constructed_mos_table` writes a set whose quality is known by construction
(opinion-unaware practice, as in dipIQ and RankIQA): the embedded photos
(``photos`` and ``imagenet`` sample sets), resized to a 256-pixel shorter side,
with TID2013-style distortions at 5 levels, labelled with a full-reference metric
against the pristine photo (VIF, ``vifvec.m``, by default), clipped to [0, 1]
(pristine: 1). Photos larger than the tile size also give up to ``tiles``
native-resolution 256×256 tiles, distorted and labelled the same way, marked
``train_only``: they add content (and the camera's own fine detail, which the
resized photo loses) for training, share their photo's ``source`` so they are held
out with it, and are left out of the held-out score, which is measured on whole
photos only.

Why VIF: SROCC of a ridge fit on the multi-level features, 4-fold by source, was
0.86 for VIF labels against 0.73 for SSIM, 0.78 for GMSD, 0.74 for FSIM and 0.56 for
VSI (``docs/metrics.md``); VIF's information-fidelity scale is the least content-
dependent across these distortion types, so a no-reference model can learn it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import shlex
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

#: Contrast reduction factor per level (blend towards the image's mean grey).
CONTRAST = (0.7, 0.5, 0.35, 0.22, 0.12)
CONSTRUCTED_DISTORTIONS = ("blur", "noise", "jpeg", "jpeg2000", "contrast")
CONSTRUCTED_SETS = ("photos", "imagenet")
SHORT_SIDE = 256


@dataclass
class MosRow:
    image: Path
    mos: float
    std: float
    source: str
    train_only: bool = False


@dataclass
class TrainedNr:
    """What :func:`train_nr` wrote and measured."""

    weights: Path
    sidecar: Path
    heldout: dict
    seconds: float


def contrast(images: torch.Tensor, level: int) -> torch.Tensor:
    """Global contrast reduction, TID2013's "contrast change" (decrease), 8-bit; RGB or grey."""
    if images.shape[1] == 3:
        grey = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])
    else:
        grey = images[:, 0]
    mean = grey.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    factor = CONTRAST[level - 1]
    return ((mean + factor * (images - mean)).clamp(0, 1) * 255).round() / 255


def _distort(image: torch.Tensor, kind: str, level: int, seed: int) -> torch.Tensor:
    from advqa.detect.distortions import distort

    if kind == "contrast":
        return contrast(image, level)
    return distort(image, kind, level, seed=seed)


def _resized(image: torch.Tensor, short_side: int | None) -> torch.Tensor:
    """Lanczos-resized to ``short_side`` (None: unchanged, e.g. 28-pixel Fashion-MNIST)."""
    if short_side is None:
        return (image.clamp(0, 1) * 255).round() / 255
    from PIL import Image

    from advqa.detect.distortions import from_pil, to_pil

    picture = to_pil(image)
    scale = short_side / min(picture.size)
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)),
                             Image.Resampling.LANCZOS)
    return from_pil(picture)


def _tiles(image: torch.Tensor, size: int, count: int, seed: int) -> list[torch.Tensor]:
    """Up to ``count`` non-overlapping native-resolution tiles, seeded, skipping flat ones
    (grey std < 0.03: the black borders of retina and hubble_deep_field)."""
    height, width = image.shape[-2:]
    corners = [(top, left) for top in range(0, height - size + 1, size)
               for left in range(0, width - size + 1, size)]
    if len(corners) > count:
        chosen = np.random.default_rng(seed).choice(len(corners), count, replace=False)
        corners = [corners[index] for index in sorted(chosen)]
    crops = [image[:, top:top + size, left:left + size] for top, left in corners]
    return [crop for crop in crops if float(crop.std()) >= 0.03]


def constructed_mos_table(out_dir: str | Path, *, sets=CONSTRUCTED_SETS, sources=None,
                          distortions=CONSTRUCTED_DISTORTIONS, levels=(1, 2, 3, 4, 5),
                          short_side: int | None = SHORT_SIDE, tiles: int = 6,
                          label: str = "vif", limit: int | None = None, seed: int = 0,
                          progress: bool = True) -> Path:
    """Write the constructed set: ``out_dir/images/<source>__<kind><level>.png`` (and
    ``<source>__pristine.png``; tiles ``<source>_t<k>__…``) and ``out_dir/mos.csv``
    (``image, mos, source, distortion, level, train_only``); returns the CSV's path.
    ``sources`` keeps only those sample names; ``tiles`` caps the native tiles per photo
    (0: none); ``label`` is the full-reference metric (higher better, clipped to
    [0, 1]) of each distorted image against its pristine one; ``short_side`` None keeps
    the native size (and makes no tiles), as for 28-pixel Fashion-MNIST, whose one
    channel is kept (grey PNGs); ``limit`` keeps the first N samples of each set."""
    from tqdm.auto import tqdm

    from advqa.data import load_samples, save_png
    from advqa.quality import get_metric, list_metrics

    info = list_metrics().get(label)
    if info is None or not (info.full_reference and info.higher_is_better):
        raise ValueError(f"label {label!r} must be a full-reference metric, higher better "
                         "(e.g. vif, ssim, fsim)")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    metric = get_metric(label)
    from advqa.detect.distortions import DISTORTIONS

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for every sample), got {limit}")
    if short_side is not None and short_side < 1:
        raise ValueError(f"short_side must be >= 1 (or None: native size), got {short_side}")
    unknown = sorted(set(distortions) - {*DISTORTIONS, "contrast"})
    if unknown or not distortions:
        raise ValueError(f"unknown distortions {unknown} (or none given); valid: "
                         f"{', '.join([*DISTORTIONS, 'contrast'])}")
    samples = [sample for name in sets
               for sample in list(load_samples(name))[:limit]
               if sources is None or sample.name in sources]
    if not samples:
        raise ValueError(f"no sample of {', '.join(sets)} matches the sources asked for")
    rows = []
    for sample in tqdm(samples, desc="constructed set", disable=not progress):
        pieces = [(sample.name, _resized(sample.image, short_side), 0)]
        pieces += [(f"{sample.name}_t{index}", tile, 1) for index, tile in enumerate(
            _tiles(sample.image, short_side, tiles, seed) if tiles and short_side else [])]
        for stem, pristine, train_only in pieces:
            save_png(pristine, out_dir / "images" / f"{stem}__pristine.png")
            rows.append((f"images/{stem}__pristine.png", 1.0, sample.name, "pristine", 0,
                         train_only))
            for kind in distortions:
                for level in levels:
                    distorted = _distort(pristine[None], kind, level, seed)[0]
                    quality = float(metric(distorted[None], pristine[None])[0].clamp(0, 1))
                    name = f"images/{stem}__{kind}{level}.png"
                    save_png(distorted, out_dir / name)
                    rows.append((name, round(quality, 6), sample.name, kind, level,
                                 train_only))
    table = out_dir / "mos.csv"
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mos", "source", "distortion", "level", "train_only"])
        writer.writerows(rows)
    return table


def read_mos_table(path: str | Path) -> list[MosRow]:
    """Rows of a MOS CSV (``image``, ``mos``, optional ``std``, ``source``, ``train_only``)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"image", "mos"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: the MOS table needs columns image and mos "
                             f"(missing {', '.join(sorted(missing))})")
        rows = []
        for record in reader:
            image = path.parent / record["image"]
            std = record.get("std") or ""
            source = record.get("source") or image.stem.split("_")[0]
            rows.append(MosRow(image, float(record["mos"]), float(std) if std else math.nan,
                               source, (record.get("train_only") or "0").strip() in ("1", "true")))
    if len(rows) < 4:
        raise ValueError(f"{path}: a MOS table needs at least 4 rows, got {len(rows)}")
    return rows


def fingerprint(table: Path, rows: list[MosRow]) -> dict:
    """SHA-256 of the table and of its image files (sorted by path: name and digest)."""
    from advqa.quality.dtniq import file_sha256

    images = hashlib.sha256()
    for row in sorted(rows, key=lambda row: str(row.image)):
        images.update(f"{row.image.relative_to(table.parent)}\t{file_sha256(row.image)}\n"
                      .encode())
    return {"mos_table_sha256": file_sha256(table), "images_sha256": images.hexdigest(),
            "images": len(rows)}


def split_sources(rows: list[MosRow], holdout: float, seed: int) -> list[str]:
    """The held-out sources: a seeded ``holdout`` fraction (≥ 1, leaving ≥ 1 to train)."""
    sources = sorted({row.source for row in rows})
    if len(sources) < 2:
        raise ValueError("a held-out split by source needs at least 2 source images")
    order = torch.randperm(len(sources), generator=torch.Generator().manual_seed(seed))
    count = min(len(sources) - 1, max(1, round(holdout * len(sources))))
    return sorted(sources[int(index)] for index in order[:count])


def extract_features(backbone, paths: list[Path], grid: int, layers=None, *,
                     progress: bool = True):
    """Backbone features of every patch: (P, d) features and (P,) owning row index."""
    from tqdm.auto import tqdm

    from advqa.data.io import read_image
    from advqa.models.classifier import input_channels
    from advqa.quality.dtniq import backbone_features, patches
    from advqa.quality.validate import match_channels

    features, owners = [], []
    with torch.no_grad():
        for index, path in enumerate(tqdm(paths, desc="backbone features",
                                          disable=not progress)):
            image = read_image(path, mode="keep")  # one channel for grey PNGs
            crops = patches(match_channels(image[None], input_channels(backbone))[0],
                            backbone.info.input_size, grid)
            features.append(backbone_features(backbone, crops.to(backbone.device), layers).cpu())
            owners += [index] * len(crops)
    return torch.cat(features), torch.tensor(owners)


def soft_targets(classes: torch.Tensor, sigma: float) -> torch.Tensor:
    """One-hot (sigma = 0) or a Gaussian over neighbouring classes, rows summing to 1."""
    from advqa.quality.dtniq import CLASSES

    grid = torch.arange(CLASSES, dtype=torch.float32)
    if sigma <= 0:
        return torch.nn.functional.one_hot(classes, CLASSES).float()
    weights = torch.exp(-0.5 * ((grid[None] - classes[:, None].float()) / sigma) ** 2)
    return weights / weights.sum(1, keepdim=True)


def fit_head(features, targets, *, epochs, batch_size, lr, dropout, seed, progress):
    from tqdm.auto import tqdm

    from advqa.quality.dtniq import make_head

    torch.manual_seed(seed)
    head = make_head(features.shape[1], dropout=dropout)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in tqdm(range(epochs), desc="train head", disable=not progress):
        order, total = torch.randperm(len(features), generator=generator), 0.0
        head.train()
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            log_probability = head(features[batch]).log_softmax(-1)
            loss = -(targets[batch] * log_probability).sum(-1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(order))
    return head.eval(), losses


def predict_rows(head, features, owners, count: int) -> torch.Tensor:
    """Per-row mean over its patches of the normalised expected class."""
    from advqa.quality.dtniq import expected_class

    with torch.no_grad():
        per_patch = expected_class(head(features))
    sums = torch.zeros(count).index_add_(0, owners, per_patch)
    return sums / torch.bincount(owners, minlength=count).clamp(min=1)


def command_line(table, out, settings: dict) -> str:
    parts = ["advqa", "dtniq", "train", str(table), "--out", str(out)]
    for key, value in settings.items():
        if value is not None:
            flag = "--" + key.replace("_", "-")
            parts += [flag, *(map(repr, value) if isinstance(value, tuple | list)
                              else [repr(value) if isinstance(value, float) else str(value)])]
    return shlex.join(parts)


def _load_cache(cache, key):
    if cache is None or not Path(cache).is_file():
        return None
    stored = torch.load(cache, map_location="cpu", weights_only=True)
    return (stored["features"], stored["owners"]) if stored.get("key") == key else None


def _cached_features(backbone, rows, grid, layers, cache, key, progress):
    loaded = _load_cache(cache, key)
    if loaded is not None:
        return loaded
    features, owners = extract_features(backbone, [row.image for row in rows], grid, layers,
                                        progress=progress)
    if cache is not None:
        torch.save({"key": key, "features": features, "owners": owners}, cache)
    return features, owners


def train_nr(mos_table: str | Path, out: str | Path, *, backbone: str = "efficientnet-lite0",
             features: str = "multilevel", grid: int = 2, holdout: float = 0.25,
             epochs: int = 60, batch_size: int = 128,
             lr: float = 1e-4, dropout: float = 0.5, label_sigma: float = 1.5,
             mos_range: tuple[float, float] | None = None, seed: int = 0, threads: int = 2,
             float16: bool = True, name: str | None = None, description: str = "",
             cache: str | Path | None = None, progress: bool = True,
             say=print) -> TrainedNr:
    """Train a DTNIQ-f head on ``mos_table`` and write ``out`` (.pt) and its sidecar (.json).

    ``features``: ``"multilevel"`` or ``"last-linear"`` (:mod:`advqa.quality.dtniq`);
    ``grid``: patch lattice (≤ grid² crops of the backbone's input size per image);
    ``holdout``: fraction of source images held out; ``label_sigma``: width in classes
    of the Gaussian soft target around each image's class (0 = one-hot, the paper's
    plain softmax classification); ``mos_range``: the MOS the classes span (default:
    the table's min and max); ``cache``: a file for the extracted features (reused
    when the data fingerprint, backbone and grid match). Same settings and thread
    count give identical weights.
    """
    from advqa.evaluate.correlation import correlations
    from advqa.models import load_classifier
    from advqa.quality.dtniq import CLASSES, HIDDEN, feature_layers, file_sha256

    if features not in ("multilevel", "last-linear"):
        raise ValueError(f"features must be 'multilevel' or 'last-linear', got {features!r}")
    if not (0 < holdout < 1 and grid >= 1 and epochs >= 1 and lr > 0):
        raise ValueError("need 0 < holdout < 1, grid >= 1, epochs >= 1 and lr > 0")
    started = time.monotonic()
    table, out = Path(mos_table), Path(out)
    torch.set_num_threads(threads)
    rows = read_mos_table(table)
    data = fingerprint(table, rows)
    mos = np.array([row.mos for row in rows])
    low, high = (float(mos.min()), float(mos.max())) if mos_range is None else mos_range
    if not high > low:
        raise ValueError(f"the MOS range must not be empty, got ({low}, {high})")
    normalised = torch.tensor(np.clip((mos - low) / (high - low), 0, 1), dtype=torch.float32)
    classes = (normalised * (CLASSES - 1)).round().long()
    heldout_sources = split_sources(rows, holdout, seed)
    held = torch.tensor([row.source in heldout_sources for row in rows])
    model = load_classifier(backbone, device="cpu")
    say(f"{len(rows)} images from {len(set(r.source for r in rows))} sources; "
        f"{len(heldout_sources)} sources held out")
    layers = feature_layers(model) if features == "multilevel" else None
    key = f"{data['images_sha256']}:{backbone}:{grid}:{features}"
    inputs, owners = _cached_features(model, rows, grid, layers, cache, key, progress)
    train = ~held[owners]
    head, losses = fit_head(inputs[train], soft_targets(classes[owners[train]], label_sigma),
                            epochs=epochs, batch_size=batch_size, lr=lr, dropout=dropout,
                            seed=seed, progress=progress)
    predicted = predict_rows(head, inputs, owners, len(rows))
    scored = held & ~torch.tensor([row.train_only for row in rows])
    std = np.array([row.std for row in rows])[scored.numpy()] / (high - low)
    scores = correlations(predicted[scored].numpy(), normalised[scored].numpy(),
                          mos_std=std if np.isfinite(std).all() else None)
    heldout = {"srocc": round(float(scores["srocc"]), 5), "plcc": round(float(scores["plcc"]), 5),
               "images": int(scored.sum()), "sources": heldout_sources}
    state = {key: (value.half() if float16 else value).contiguous()
             for key, value in head.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    from advqa.data import atomic_write_bytes

    atomic_write_bytes(out, buffer.getvalue())
    settings = {"backbone": backbone, "features": features, "grid": grid, "holdout": holdout,
                "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "dropout": dropout,
                "label_sigma": label_sigma, "mos_range": mos_range, "seed": seed,
                "threads": threads}
    command = command_line(table, out, {**settings, "description": description or None})
    seconds = time.monotonic() - started
    record = {
        "name": name or out.stem, "description": description,
        "command": command,
        "architecture": f"frozen {backbone} {features} features -> "
                        f"fc{HIDDEN}-relu-fc{HIDDEN}-relu-fc{CLASSES}-softmax; "
                        "q = mean over patches of sum_j j*v_j, reported as (q-1)/69",
        "backbone": backbone, "features": int(inputs.shape[1]), "feature_kind": features,
        "layers": layers, "grid": grid,
        "patch_size": int(model.info.input_size), "classes": CLASSES,
        "mos_range": [low, high], "settings": settings,
        "optimizer": "Adam, weight decay 1e-4, soft-target cross-entropy",
        "data": {"mos_table": table.name, **data},
        "train_images": int((~held).sum()), "train_patches": int(train.sum()),
        "train_sources": sorted({r.source for r in rows} - set(heldout_sources)),
        "heldout": heldout, "train_loss": [round(value, 5) for value in losses],
        "seed": seed, "threads": threads, "seconds": round(seconds, 1),
        "dtype": "float16" if float16 else "float32",
        "weights_sha256": file_sha256(out), "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    sidecar = out.with_suffix(".json")
    atomic_write_bytes(sidecar, (json.dumps(record, indent=2) + "\n").encode())
    return TrainedNr(out, sidecar, heldout, seconds)
