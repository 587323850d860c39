"""StudyDir: one class owns the study directory's layout (issue 12 §2).

No module but ``advqa/study/layout.py`` spells a study file name as a path; every
reader and writer goes through :class:`advqa.study.StudyDir`.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from advqa.study import Applications, StudyDir
from advqa.study.store import StudyLock

SOURCE = Path(__file__).resolve().parents[1] / "src" / "advqa"

# The study's files, spelled out here independently of layout.py so that the test
# is the specification: a file name in these lists must be declared by StudyDir,
# and every file StudyDir declares must be in these lists.
STUDY_FILES = ("study.json", "failures.csv", "ledger.sqlite", "study.lock", "report.html",
               "scatter.png", "aeqa_curves.png")
STUDY_TABLES = ("manifest", "scores", "scored_manifest", "score_failures", "summary", "mos",
                "correlations", "detection", "detection_summary", "attack_comparison",
                "best_settings", "aeqa_curves", "lbfgs_vs_pgd")
STUDY_FOLDERS = ("images/ref", "images/adv", "aeqa_applications")

# Path literals that name a file of *another* directory that merely shares a study
# file's name; (module relative to src/advqa, literal) -> why it is not a study file.
NOT_STUDY_FILES = {
    ("workflows/attack.py", "failures.csv"):
        "`advqa attack`'s output folder of AEs is not a study; its failures.csv lists "
        "the input images that could not be read",
    ("detect/stego_eval.py", "ledger.sqlite"):
        "the stego-eval run directory (--out runs/stego) is not a study",
    ("workflows/gate.py", "ledger.sqlite"):
        "gate-eval's output folder (--out DIR) is not a study; its ledger keeps the "
        "generation and split units",
    ("workflows/semantic.py", "ledger.sqlite"):
        "semantic-impact's output folder (--out DIR) is not a study; its ledger keeps the "
        "(distortion, level) units",
    ("workflows/train_nr.py", "images"):
        "the DTNIQ-f constructed set (`advqa dtniq construct DIR`) is not a study: its "
        "images/ folder holds pristine and distorted photos and their mos.csv labels",
    ("workflows/train_nr.py", "mos.csv"):
        "the DTNIQ-f constructed set's SSIM labels, not a study's opinion scores",
    ("robustness/leaderboard.py", "scores"):
        "the benchmark's output folder (scores.{parquet,csv} of metric robustness) is "
        "not a study",
}

NAME = r"(?<![\w.\-]){}(?![\w\-])"
PATTERNS = (
    [re.compile(NAME.format(re.escape(name))) for name in STUDY_FILES]
    + [re.compile(NAME.format(re.escape(stem) + r"\.(parquet|csv)")) for stem in STUDY_TABLES]
    + [re.compile(NAME.format(re.escape(folder))) for folder in STUDY_FOLDERS])
STEMS = {*STUDY_TABLES, *STUDY_FOLDERS, "images", "ref", "adv"}
JOINING_CALLS = {"Path", "joinpath", "join", "with_name", "with_stem", "write_table"}


def docstring_ids(tree: ast.AST) -> set[int]:
    """ids of string constants that are documentation (bare string statements)."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)}


def path_operands(tree: ast.AST) -> set[int]:
    """ids of string constants joined into a path: ``x / "s"``, ``Path(x, "s")``, …"""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found |= {id(node.left), id(node.right)}
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name in JOINING_CALLS:
                found |= {id(argument) for argument in node.args}
    return found


def path_literals(source: str) -> list[tuple[int, str]]:
    """(line, literal) of every string constant that spells a study file as a path.

    Prose (a string with whitespace: a help text, a message) may name a file for its
    reader; documentation strings are not code. What counts is a whitespace-free
    constant holding a study file name, or a bare study stem joined into a path.
    """
    tree = ast.parse(source)
    documentation, joined = docstring_ids(tree), path_operands(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        if id(node) in documentation or re.search(r"\s", text):
            continue
        if any(pattern.search(text) for pattern in PATTERNS) or (
                id(node) in joined and text.strip("/") in STEMS):
            found.append((node.lineno, text))
    return found


def test_the_detector_finds_path_literals():
    code = '''
"""Docstrings may name study.json and manifest.parquet."""
path = study / "scores"
other = study / "summary.parquet"
image = f"images/adv/{name}.png"
ledger = Path(study, "ledger.sqlite")
message = "see failures.csv for the reasons"
route = "/images/reference/{item}"
keys = ("summary", "detection", "correlations")
'''
    assert [text for _, text in path_literals(code)] == [
        "scores", "summary.parquet", "images/adv/", "ledger.sqlite"]


def test_no_module_but_the_layout_spells_a_study_file():
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        module = path.relative_to(SOURCE).as_posix()
        if module == "study/layout.py":
            continue
        for line, text in path_literals(path.read_text(encoding="utf-8")):
            if (module, text) not in NOT_STUDY_FILES:
                offenders.append(f"{module}:{line}: {text!r}")
    assert not offenders, ("use advqa.study.StudyDir instead of spelling study files:\n"
                           + "\n".join(offenders))


def test_the_allow_list_is_still_needed():
    """Each exception names a literal its module still holds (no stale exemptions)."""
    for (module, text), _why in NOT_STUDY_FILES.items():
        found = {literal for _, literal in
                 path_literals((SOURCE / module).read_text(encoding="utf-8"))}
        assert text in found, (module, text)


def test_the_layout_declares_exactly_the_listed_files():
    def names(owner) -> set[str]:
        return {value for key, value in vars(owner).items()
                if key.isupper() and isinstance(value, str)}

    declared = names(StudyDir) | names(Applications) - {Applications.FOLDER}
    listed = {*STUDY_FILES, *STUDY_TABLES, *STUDY_FOLDERS} - {"aeqa_applications"}
    assert declared == listed
    assert Applications.FOLDER == "aeqa_applications"


def test_importing_the_layout_does_not_import_torch():
    code = ("import sys\nfrom advqa.study.layout import StudyDir\n"
            "from advqa.study import StudyDir as Exported\n"
            "assert StudyDir is Exported\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'advqa.study.build' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=SOURCE.parents[1],
                            env={"PYTHONPATH": str(SOURCE.parent), "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr


def test_paths_are_those_of_the_readme(tmp_path):
    study = StudyDir(tmp_path)
    assert study.path == tmp_path
    assert study.settings_path == tmp_path / "study.json"
    assert study.manifest_path == tmp_path / "manifest.parquet"
    assert study.scored_manifest_path == tmp_path / "scored_manifest.parquet"
    assert study.ledger_path == tmp_path / "ledger.sqlite"
    assert study.report_path == tmp_path / "report.html"
    assert study.applications.path == tmp_path / "aeqa_applications"
    assert StudyDir.reference_path("cat") == "images/ref/cat.png"
    assert study.adversarial_path("cat__pgd") == "images/adv/cat__pgd.png"
    assert study.resolve("images/adv/x.png") == tmp_path / "images" / "adv" / "x.png"
    lock = study.lock()
    assert isinstance(lock, StudyLock) and lock.path == study.lock_path


def test_required_files_say_which_command_writes_them(tmp_path):
    study = StudyDir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"manifest\.parquet.*advqa build"):
        study.manifest()
    with pytest.raises(FileNotFoundError, match=r"study\.json.*advqa build"):
        study.settings()
    with pytest.raises(FileNotFoundError, match="advqa score --study"):
        study.scored_manifest(required=True)
    with pytest.raises(FileNotFoundError, match="advqa evaluate aeqa"):
        study.applications.best_settings(required=True)
    with pytest.raises(FileNotFoundError, match="advqa detect study"):
        study.detection_summary(required=True)


def test_optional_files_are_none_when_absent(tmp_path):
    study = StudyDir(tmp_path)
    assert study.settings(required=False) is None
    for reader in (study.scores, study.scored_manifest, study.score_failures, study.mos,
                   study.correlations, study.detection, study.detection_summary,
                   study.success_table, study.failures, study.applications.curves,
                   study.applications.best_settings, study.applications.attack_comparison,
                   study.applications.lbfgs):
        assert reader() is None, reader
    assert study.scatter() is None and study.applications.curves_figure() is None


def test_tables_round_trip_as_parquet_and_csv(tmp_path):
    study = StudyDir(tmp_path)
    table = pd.DataFrame({"id": ["a", "b"], "psnr": [30.5, 31.0]})
    writers = [(study.write_manifest, study.manifest), (study.write_scores, study.scores),
               (study.write_mos, study.mos),
               (study.applications.write_curves, study.applications.curves)]
    for write, read in writers:
        parquet, csv = write(table)
        assert parquet.parent == csv.parent and csv.suffix == ".csv"
        pd.testing.assert_frame_equal(read(), table)
        pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    study.write_settings({"model": "m", "seed": 0})
    assert study.settings() == {"model": "m", "seed": 0}
    assert study.settings_path.read_text() == '{\n  "model": "m",\n  "seed": 0\n}'
    study.write_failures(pd.DataFrame(columns=["path", "unit", "reason"]))
    assert list(study.failures().columns) == ["path", "unit", "reason"]


def test_a_manifest_is_read_by_one_reader_that_checks_it(tmp_path):
    study = StudyDir(tmp_path)
    study.write_manifest(pd.DataFrame({"name": ["a"]}))
    with pytest.raises(ValueError, match="no 'id' column"):
        study.manifest()
    study.write_manifest(pd.DataFrame({"id": ["a"], "image": ["x"], "l2": [0.1]}))
    assert list(study.manifest(columns=["id", "image"]).columns) == ["id", "image"]


def test_of_manifest_refuses_another_file(tmp_path):
    assert StudyDir.of_manifest(tmp_path / "manifest.parquet") == StudyDir(tmp_path)
    with pytest.raises(ValueError, match="not a study manifest"):
        StudyDir.of_manifest(tmp_path / "scored_manifest.parquet")
