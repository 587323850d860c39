"""Parsing and error handling shared by the subcommands."""

from __future__ import annotations

import argparse
from fractions import Fraction


class CommandError(Exception):
    """A fatal, user-facing error: printed without a traceback, exit code 2."""


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
    parser.add_argument("--device", default=None, help="torch device; default: cuda if present")


def load_model(arguments):
    from advqa.models import load_classifier

    weights = None if arguments.weights.lower() == "none" else arguments.weights
    return load_classifier(arguments.model, weights=weights, device=arguments.device)
