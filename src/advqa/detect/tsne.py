"""Figure 4 (left) of Feng & Cai: a t-SNE map of the gate's 6-D features by image group.

The gate's features are the victim's top-5 probabilities and the normalised quality
(:mod:`advqa.detect.features`). The paper draws clean images as gray dots and fooling
images (Fool_EV) as red ones; here every group gets a colour (``clean`` gray, then red,
blue, ... in order of first appearance) and a legend entry with its size.

t-SNE is scikit-learn's ``TSNE`` (default Barnes-Hut method) with PCA
initialisation and ``random_state=seed`` (same features and seed, same map). The
features are used as they are (all in ``[0, 1]``), not standardised. Perplexity must
be below the number of points; the default is ``min(30, (n - 1) / 3)``, i.e. sklearn's
default 30 for ``n >= 91`` and, for fewer points, the largest value at which each point
still has three times as many neighbours as its effective neighbourhood. At least four
points are needed (perplexity >= 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

FEATURE_DIMENSIONS = 6
MIN_POINTS = 4
WIDTH, HEIGHT = 5.0, 4.5  # inches
CLEAN_COLOUR = "0.6"
COLOURS = ("tab:red", "tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown",
           "tab:pink", "tab:olive", "tab:cyan")


def default_perplexity(count: int) -> float:
    """``min(30, (count - 1) / 3)``."""
    return min(30.0, (count - 1) / 3)


def _features(features) -> np.ndarray:
    array = np.asarray(features, dtype=float)
    if array.ndim != 2 or array.shape[1] != FEATURE_DIMENSIONS:
        raise ValueError(f"features must have shape (n, {FEATURE_DIMENSIONS}), got "
                         f"{array.shape}")
    if array.shape[0] < MIN_POINTS:
        raise ValueError(f"t-SNE needs at least {MIN_POINTS} points, got {array.shape[0]}")
    if not np.all(np.isfinite(array)):
        raise ValueError("features must be finite")
    return array


def tsne_embedding(features, *, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """The ``(n, 2)`` t-SNE embedding of ``(n, 6)`` features (see the module doc)."""
    from sklearn.manifold import TSNE

    array = _features(features)
    count = array.shape[0]
    limit = default_perplexity(count)
    if perplexity is None:
        perplexity = limit
    elif not 0 < perplexity <= limit:
        raise ValueError(f"perplexity must be in (0, (n - 1) / 3 = {limit:.3g}] for n = "
                         f"{count} points, got {perplexity!r}")
    return TSNE(n_components=2, perplexity=float(perplexity), init="pca",
                random_state=int(seed)).fit_transform(array)


def _colours(names: list[str]) -> dict[str, str]:
    others = iter(COLOURS * (len(names) // len(COLOURS) + 1))
    return {name: CLEAN_COLOUR if name == "clean" else next(others) for name in names}


def tsne_figure(features, groups: Sequence[str], path: str | Path, *, seed: int = 0,
                perplexity: float | None = None, title: str | None = None) -> Path:
    """Draw the t-SNE map of ``features`` coloured by ``groups`` and save it as PNG.

    Parameters
    ----------
    features : array-like
        ``(n, 6)`` gate features (top-5 probabilities, quality).
    groups : sequence of str
        The group of each row (e.g. ``"clean"``, ``"ev"``), length ``n``.
    path : str or Path
        Output file (PNG; SVG for a ``.svg`` suffix), written atomically.
    seed, perplexity : int, float
        t-SNE's ``random_state`` and perplexity (default ``min(30, (n - 1) / 3)``).
    title : str, optional
        Axes title.

    Returns
    -------
    Path
        The written file, :data:`WIDTH` × :data:`HEIGHT` inches at
        :data:`advqa.plotting.DPI`.
    """
    from advqa.plotting import legend, new_figure, save_figure, subplots

    array = _features(features)
    labels = [str(group) for group in groups]
    if len(labels) != array.shape[0]:
        raise ValueError(f"groups has {len(labels)} entries but features has "
                         f"{array.shape[0]} rows")
    embedding = tsne_embedding(array, seed=seed, perplexity=perplexity)
    names = list(dict.fromkeys(labels))
    colours = _colours(names)
    figure = new_figure(WIDTH, HEIGHT)
    ax = subplots(figure)[0, 0]
    members = np.asarray(labels)
    for name in names:
        points = embedding[members == name]
        # Small groups (ten fooling images among 9,000 clean ones) are drawn above the
        # large ones, bigger and outlined, so they stay visible.
        small = len(points) < 0.02 * len(members)
        ax.scatter(points[:, 0], points[:, 1], s=24 if small else 8, c=colours[name],
                   alpha=1.0 if small else 0.7, linewidths=0.5 if small else 0,
                   edgecolors="black", zorder=3 if small else 2,
                   label=f"{name} ({len(points)})")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(title or "Gate features (top-5 probabilities + quality)", fontsize="medium")
    legend(ax, loc="best", markerscale=2)
    return save_figure(figure, path)
