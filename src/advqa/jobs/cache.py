"""Objects a worker builds once and keeps across units (models, metrics).

The cache lives in the worker's process (a module global), so it survives from one
unit to the next on a ``process`` or Dask worker and in the client for ``local``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

#: Most objects kept; the least recently used goes first (a model is ~20 MB to 1 GB).
CAPACITY = 8
_CACHE: OrderedDict = OrderedDict()


def worker_cache(factory: Callable, *args, **kwargs):
    """``factory(*args, **kwargs)``, built once per process for the same arguments.

    Arguments must be hashable and describe the object completely (a model name and
    its weight file, a metric name and its options).
    """
    key = (getattr(factory, "__module__", ""), getattr(factory, "__qualname__", repr(factory)),
           args, tuple(sorted(kwargs.items())))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = factory(*args, **kwargs)
    _CACHE[key] = value
    while len(_CACHE) > CAPACITY:
        _CACHE.popitem(last=False)
    return value


def clear_worker_cache() -> None:
    _CACHE.clear()
