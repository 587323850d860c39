"""A user's own metric, by entry point or by ``module:attribute`` path.

The plug-in protocol: the named object is a class or factory which, called with
keyword options, returns an ``nn.Module`` that

- has ``info``, an :class:`advqa.quality.MetricInfo` (name, full_reference,
  higher_is_better, range, differentiable, description);
- maps ``(distorted, reference=None)`` NCHW [0, 1] batches to (N,) scores,
  differentiably if it is to be attacked.

Register it for ``advqa benchmark --metrics <name>`` in the package's
``pyproject.toml``::

    [project.entry-points."advqa.metrics"]
    mymetric = "mypackage.metrics:MyMetric"

or name it directly: ``--metrics mypackage.metrics:MyMetric``. With a Dask
cluster the package must be importable on every worker.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from advqa.quality.registry import (
    PYIQA_PREFIX,
    MetricInfo,
    UnknownMetricError,
    get_metric,
    list_metrics,
)

ENTRY_POINT_GROUP = "advqa.metrics"


def plugin_names() -> list[str]:
    """Metric names other installed packages register under ``advqa.metrics``."""
    return sorted(point.name for point in entry_points(group=ENTRY_POINT_GROUP))


def load_metric(name: str, **options):
    """A registry metric, a no-reference video metric on one-frame clips (``vsfa``,
    :func:`advqa.quality.video.image_form`), a ``pyiqa:<name>`` adapter, an entry point or
    a ``module:attr``.

    Raises
    ------
    UnknownMetricError
        When ``name`` is none of these; the message lists what exists.
    TypeError
        When a plug-in does not follow the protocol above.
    """
    if name in list_metrics() or name.startswith(PYIQA_PREFIX):
        return get_metric(name, **options)
    from advqa.quality.video import image_form, list_video_metrics

    if name in list_video_metrics():  # a VQA metric on images: one-frame clips, as MSU does
        return image_form(name, **options)
    points = [point for point in entry_points(group=ENTRY_POINT_GROUP) if point.name == name]
    if points:
        return checked(points[0].load()(**options), name)
    if ":" in name:
        return checked(import_attribute(name)(**options), name)
    known = ", ".join([*list_metrics(), *plugin_names()])
    video = ", ".join(name for name, info in list_video_metrics().items()
                      if not info.full_reference)
    raise UnknownMetricError(
        f"unknown metric {name!r}; valid names: {known}, the video metrics {video} "
        f"(each image a one-frame clip), 'pyiqa:<name>', or a plug-in path "
        f"'package.module:Class'")


def import_attribute(path: str):
    """:func:`advqa.plugins.import_path` (the current directory included), failing with
    :class:`UnknownMetricError`."""
    from advqa.plugins import import_path

    try:
        return import_path(path)
    except ImportError as error:
        raise UnknownMetricError(f"plug-in metric {path!r}: {error}") from error


def checked(metric, name: str):
    if not isinstance(getattr(metric, "info", None), MetricInfo) or not callable(metric):
        raise TypeError(f"plug-in {name!r} must return a callable module with an `info` "
                        f"attribute of type advqa.quality.MetricInfo; got {type(metric).__name__}")
    return metric
