"""Lp distances as metrics: the norms attacks are budgeted in, on [0, data_range] images.

``l0`` counts changed pixel positions; ``l1``, ``l2`` and ``linf`` run over all
components, scaled to [0, 1] units. Lower is better; 0 means identical.
"""

from __future__ import annotations

from advqa.norms import distances
from advqa.quality.validate import check_pair


def _distance(name):
    def distance(reference, distorted, *, data_range=1.0, clamp=False):
        reference, distorted = check_pair(reference, distorted, data_range=data_range,
                                          clamp=clamp)
        return distances(reference / data_range, distorted / data_range)[name].to(
            reference.dtype)

    distance.__name__ = name
    distance.__doc__ = f"Per-sample {name.upper()} distance of ``distorted − reference``."
    return distance


l0 = _distance("l0")
l1 = _distance("l1")
l2 = _distance("l2")
linf = _distance("linf")
