"""``advqa models``: what can be loaded, and whether its weights are here."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list classifiers and whether weights are present",
        description="List classifiers and whether their weights are on disk.")
    parser.add_argument("--available", action="store_true", help="only those with weights present")
    parser.set_defaults(handler=run)


def run(arguments) -> int:
    from advqa.models import list_models

    rows = [row for row in list_models() if row.weights_present or not arguments.available]
    width = max(len(row.name) for row in rows)
    print(f"{'name':<{width}}  weights  description / weight file")
    for row in rows:
        status = "present" if row.weights_present else "missing"
        print(f"{row.name:<{width}}  {status:<7}  {row.description} [{row.weights_location}]")
    return 0
