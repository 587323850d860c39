"""``module:attribute`` paths to a user's own code (a metric class, a model factory).

A plug-in module is found as Python finds any module, and also in the current directory:
``advqa score --metrics mymetrics:Sharpness`` works from the folder holding
``mymetrics.py`` without setting ``PYTHONPATH`` (the ``advqa`` console script, unlike
``python -m``, does not put the current directory on ``sys.path``).
"""

from __future__ import annotations

import importlib
import os
import sys


def import_path(path: str):
    """The object ``module:attribute`` names.

    Raises
    ------
    ImportError
        When the module cannot be imported, or has no such attribute; the message names
        the path and what to check.
    """
    module_name, separator, attribute = path.partition(":")
    if not separator or not module_name or not attribute:
        raise ImportError(f"{path!r} is not a 'module:attribute' path")
    here = os.getcwd()
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"cannot import module {module_name!r} of {path!r} (looked on "
                          f"sys.path and in {here}): {error}") from error
    finally:
        if added:
            sys.path.remove(here)
    if not hasattr(module, attribute):
        raise ImportError(f"module {module_name!r} ({module.__file__}) has no {attribute!r}")
    return getattr(module, attribute)
