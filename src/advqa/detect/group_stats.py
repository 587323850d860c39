"""Tables II and III of Feng & Cai: per-group statistics of quality and top-1 confidence.

Table II ("Quality of original ImageNet validation set and adversarial examples") has
one row per image group, with the number of images, the adversarial method and the
median, mean and standard deviation of the predicted MOS. Table III ("Statistics of
ResNet-152 prediction vectors") has one row per category of images with the median,
mean and standard deviation of the victim's top-1 class confidence.

Groups are named by key: ``"clean"`` (original images), ``"uap"`` (universal
perturbation), ``"ev"`` (Fool_EV, evolutionary algorithm) and ``"gd"`` (Fool_GD,
gradient ascent). Rows follow the paper's order: Table II clean, UAP, EV, GD;
Table III EV, UAP, clean (GD, absent from the paper's Table III, comes after EV).
Groups that are not given are left out.

The standard deviation is the sample one (``ddof=1``, pandas' default; NaN for a
group of one image): the paper does not say which it used.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

GROUPS = ("clean", "uap", "ev", "gd")
METHODS = {"clean": "None", "uap": "Universal Perturbation", "ev": "Evolutionary Algorithm",
           "gd": "Gradient Ascent Method"}
CATEGORIES = {"clean": "Original images", "uap": "Universal Perturbation",
              "ev": "Evolutionary Algorithm", "gd": "Gradient Ascent Method"}
TABLE_II_ORDER = ("clean", "uap", "ev", "gd")
TABLE_III_ORDER = ("ev", "gd", "uap", "clean")
STATISTICS = ("Median", "Mean", "Std.")


def _values(name: str, values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size == 0:
        raise ValueError(f"group {name!r} has no {what}")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ValueError(f"group {name!r}: {what} must be finite and in [0, 1]")
    return array


def _checked(groups: Mapping[str, object], what: str) -> dict[str, np.ndarray]:
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}; valid: {list(GROUPS)}")
    if not groups:
        raise ValueError("no groups given")
    return {name: _values(name, values, what) for name, values in groups.items()}


def _statistics(array: np.ndarray) -> list[float]:
    return [float(np.median(array)), float(array.mean()),
            float(array.std(ddof=1)) if array.size > 1 else float("nan")]


def quality_table(quality: Mapping[str, object]) -> pd.DataFrame:
    """Table II: predicted MOS (in ``[0, 1]``) per group.

    Parameters
    ----------
    quality : mapping
        Group key (``"clean"``, ``"uap"``, ``"ev"``, ``"gd"``) → quality scores.

    Returns
    -------
    pandas.DataFrame
        Index "Adversarial method" (``None``, ``Universal Perturbation``, ...); columns
        ``Number of images``, ``Median``, ``Mean``, ``Std.``; ``attrs["groups"]`` holds the
        group keys of the rows.
    """
    values = _checked(quality, "quality scores")
    order = [name for name in TABLE_II_ORDER if name in values]
    frame = pd.DataFrame([[values[name].size, *_statistics(values[name])] for name in order],
                         index=pd.Index([METHODS[name] for name in order],
                                        name="Adversarial method"),
                         columns=["Number of images", *STATISTICS])
    frame["Number of images"] = frame["Number of images"].astype(int)
    frame.columns.name = "Predicted MOS"
    frame.attrs["groups"] = order
    return frame


def confidence_table(confidences: Mapping[str, object]) -> pd.DataFrame:
    """Table III: the victim's top-1 class confidence per group.

    Parameters
    ----------
    confidences : mapping
        Group key → top-1 softmax probabilities (in ``[0, 1]``).

    Returns
    -------
    pandas.DataFrame
        Index "Category of images"; columns ``Median``, ``Mean``, ``Std.``;
        ``attrs["groups"]`` holds the group keys of the rows.
    """
    values = _checked(confidences, "top-1 confidences")
    order = [name for name in TABLE_III_ORDER if name in values]
    frame = pd.DataFrame([_statistics(values[name]) for name in order],
                         index=pd.Index([CATEGORIES[name] for name in order],
                                        name="Category of images"),
                         columns=list(STATISTICS))
    frame.columns.name = "Top-1 class confidence score"
    frame.attrs["groups"] = order
    return frame
