"""The command line only parses, calls one library function, prints and picks the exit code.

A function in ``advqa.cli`` longer than about 30 lines holds logic that belongs in the
library (a workflow), where Python users reach it too.
"""

from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[1] / "src" / "advqa" / "cli"
LONGEST = 30


def functions(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # Count from the def line to the last line, docstring included.
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_cli_function_is_longer_than_thirty_lines():
    long = [f"{path.name}:{line} {name}() is {length} lines"
            for path in sorted(CLI.glob("*.py"))
            for name, line, length in functions(path) if length > LONGEST]
    assert not long, "move the logic into advqa.workflows (or split option groups):\n" + \
        "\n".join(long)


def test_the_checker_sees_long_functions(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def f():\n" + "    x = 1\n" * 40)
    assert [length for *_, length in functions(source)] == [41]
