"""The multi-step jobs a user runs, each one call from Python.

=============================  ===========================================  ==================
workflow                       what                                         command
=============================  ===========================================  ==================
:func:`default_study`          build → score → applications → detection     ``advqa run``
                               → report
:func:`build_study`            a study from a source and a grid             ``advqa build``
:func:`attack_folder`          attack every image of a folder               ``advqa attack``
:func:`screen_folder`          screen a folder with a fitted gate           ``advqa screen``
:func:`fit_gate`,              fit / evaluate the fit-for-task gate         ``advqa detect
:func:`evaluate_gate`                                                       fit-gate|gate-eval``
:func:`train_victim`           train a Fashion-MNIST victim                 ``advqa train``
=============================  ===========================================  ==================

The commands (:mod:`advqa.cli`) only parse their arguments into these calls, print what
they return and choose the exit code; settings are validated here, in the library.
Imports are lazy: ``import advqa.workflows`` loads no model or metric.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "default_study": "study", "build_study": "study", "DefaultStudy": "study",
    "load_references": "study",
    "attack_folder": "attack", "FolderAttackSummary": "attack",
    "GateJob": "gate", "fit_gate": "gate", "evaluate_gate": "gate", "screen_folder": "gate",
    "TrainJob": "train", "train_victim": "train",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'advqa.workflows' has no attribute {name!r}")
    return getattr(importlib.import_module(f"advqa.workflows.{_WHERE[name]}"), name)
