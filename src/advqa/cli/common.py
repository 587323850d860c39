"""Parsing and error handling shared by the subcommands."""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path


class CommandError(Exception):
    """A fatal, user-facing error: printed without a traceback, exit code 2."""


#: The exit codes every command keeps (shown by ``advqa --help``).
EXIT_CODES = """exit codes (the same for every command):
  0    done; items that could not be read were skipped and listed in the command's
       failures file (the output says where)
  1    every item failed (nothing was produced; see the failures file)
  2    nothing to do or bad usage: no input items, an unknown name, a bad value,
       a missing file or missing weights
  130  interrupted; re-run the same command to resume"""


def exit_code(done: int, failed: int) -> int:
    """:data:`EXIT_CODES` for a run that finished ``done`` items and skipped ``failed``."""
    if done == 0 and failed == 0:
        raise CommandError("no input items: nothing to do")
    return 1 if done == 0 else 0


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: the one progress flag of every long command."""
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars or progress messages")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda:1; default: cuda if present")


def add_study_argument(parser: argparse.ArgumentParser, *, required: bool = True,
                       help: str = "study directory") -> None:
    """``--study DIR`` on every command that reads a study; the commands that took it as
    their first positional argument still do (``advqa report runs/demo``)."""
    parser.add_argument("study_position", nargs="?", type=Path, metavar="STUDY",
                        help=f"{help} (or --study)")
    parser.add_argument("--study", type=Path, default=None, help=help)
    parser.set_defaults(study_required=required)


def study_of(arguments) -> Path | None:
    """The study named by ``--study`` or by the positional STUDY (not both, unless equal)."""
    position, option = arguments.study_position, arguments.study
    if position is not None and option is not None and position != option:
        raise CommandError(f"two studies given: {position} and --study {option}")
    study = option or position
    if study is None and getattr(arguments, "study_required", True):
        raise CommandError("give the study directory: --study DIR")
    return study


def number(text: str) -> float:
    """Parse ``0.03``, ``8/255`` or ``1e-3``."""
    try:
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError) as error:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from error


def positive_int(text: str) -> int:
    """Parse an integer >= 1; 0 and negatives are refused, never replaced by a default."""
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def number_list(text: str) -> list[float]:
    return [number(part) for part in text.split(",") if part.strip()]


def name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="efficientnet-lite0",
                        help="classifier name (see `advqa models`); default: %(default)s")
    parser.add_argument("--weights", default="default",
                        help="'default' (published weights), 'none' (random) or a file path")
    add_device_option(parser)


def load_model(arguments):
    from advqa.models import load_classifier

    weights = None if arguments.weights.lower() == "none" else arguments.weights
    return load_classifier(arguments.model, weights=weights, device=arguments.device)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--workers``, ``--scheduler``: the same on every long command."""
    group = parser.add_argument_group("where the work units run")
    group.add_argument("--engine", choices=("local", "process", "dask"), default="local",
                       help="local: this process (default); process: a pool of --workers "
                       "local processes; dask: a Dask cluster (--workers N starts one on "
                       "127.0.0.1, --scheduler joins an existing one)")
    group.add_argument("--workers", type=positive_int, default=None,
                       help="worker processes for --engine process or dask "
                       "(process default: one per core)")
    group.add_argument("--scheduler", default=None,
                       help="address of a running Dask scheduler, e.g. tcp://host:8786 "
                       "(dask-jobqueue, dask-kubernetes)")


def make_engine(arguments):
    """The executor the engine options ask for; bad combinations are a CommandError."""
    from advqa.jobs import make_executor

    try:
        return make_executor(arguments.engine, workers=arguments.workers,
                             scheduler=arguments.scheduler)
    except (ValueError, ImportError, OSError) as error:
        raise CommandError(str(error)) from error
