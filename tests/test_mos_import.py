"""Importing opinion scores from spreadsheets, and the evaluate command."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from advqa.cli import evaluate as evaluate_command
from advqa.cli import main as cli_main
from advqa.evaluate.mos import (
    MissingMosError,
    MosImportError,
    import_mos,
    load_mos,
    require_mos,
    with_mos,
)

MAPPING = {"id": "Image name", "mos": "MOS", "mos_std": "Std", "n_ratings": "N"}


@pytest.fixture
def study(tmp_path):
    """A study directory whose manifest and scored manifest hold 12 AEs."""
    directory = tmp_path / "study"
    directory.mkdir()
    generator = np.random.default_rng(0)
    manifest = pd.DataFrame({
        "id": [f"img{index // 4}__{attack}-eps{strength}"
               for index, (attack, strength) in enumerate(
                   [("fgsm", 0.01), ("fgsm", 0.03), ("pgd", 0.01), ("pgd", 0.03)] * 3)],
        "image": [f"img{index // 4}" for index in range(12)],
        "attack": ["fgsm", "fgsm", "pgd", "pgd"] * 3,
        "norm": "linf",
        "strength": [0.01, 0.03] * 6,
    })
    manifest.to_parquet(directory / "manifest.parquet", index=False)
    scored = manifest.assign(psnr=generator.uniform(20, 50, 12),
                             ssim=generator.uniform(0.5, 1.0, 12))
    scored.to_parquet(directory / "scored_manifest.parquet", index=False)
    return directory


def sheet_rows(study, count=12):
    manifest = pd.read_parquet(study / "scored_manifest.parquet")
    return pd.DataFrame({"Image name": manifest["id"][:count],
                         "MOS": (manifest["psnr"][:count] / 10).round(3).astype(str),
                         "Std": "0.5", "N": "15"})


def test_good_csv_is_stored_beside_the_manifest(study, tmp_path):
    sheet = tmp_path / "scores.csv"
    sheet_rows(study, count=10).iloc[::-1].to_csv(sheet, index=False)
    table = import_mos(study, sheet, mapping=MAPPING)
    assert list(table.columns) == ["id", "mos", "mos_std", "n_ratings"]
    manifest = pd.read_parquet(study / "manifest.parquet")
    assert list(table["id"]) == list(manifest["id"][:10])  # manifest order
    assert "mos" not in manifest.columns
    assert (study / "mos.csv").is_file()
    stored = load_mos(study)
    pd.testing.assert_frame_equal(stored, table)
    assert stored["n_ratings"].dtype == "Int64"
    merged = with_mos(pd.read_parquet(study / "scored_manifest.parquet"), study)
    assert merged["mos"].notna().sum() == 10
    assert merged["mos"].iloc[0] == pytest.approx(round(merged["psnr"].iloc[0] / 10, 3))


def test_good_xlsx_matches_by_image_attack_norm_strength(study, tmp_path):
    openpyxl = pytest.importorskip("openpyxl", reason="openpyxl not installed: XLSX import "
                                   "needs the xlsx extra (pip install openpyxl)")
    manifest = pd.read_parquet(study / "manifest.parquet")
    workbook = openpyxl.Workbook()
    workbook.active.title = "notes"
    sheet = workbook.create_sheet("Results")
    sheet.append(["Source", "Attack", "Norm", "Eps", "MOS"])
    for row, mos in zip(manifest.itertuples(), np.linspace(1, 5, 12), strict=True):
        sheet.append([row.image, row.attack, row.norm, row.strength, float(mos)])
    path = tmp_path / "scores.xlsx"
    workbook.save(path)
    table = import_mos(study, path, sheet="Results",
                       mapping={"image": "Source", "attack": "Attack", "norm": "Norm",
                                "strength": "Eps", "mos": "MOS"})
    assert list(table["id"]) == list(manifest["id"])
    assert table["mos"].to_numpy() == pytest.approx(np.linspace(1, 5, 12))
    with pytest.raises(ValueError, match="no worksheet 'Missing'"):
        import_mos(study, path, sheet="Missing", mapping={"image": "Source", "mos": "MOS"})


def broken(rows: pd.DataFrame, problem: str) -> pd.DataFrame:
    rows = rows.copy()
    if problem == "unknown":
        rows.loc[2, "Image name"] = "img9__fgsm-eps0.01"
    elif problem == "duplicate":
        rows.loc[5, "Image name"] = rows.loc[1, "Image name"]
    elif problem == "missing":
        rows = rows.drop(columns="Std")
    elif problem == "nonnumeric":
        rows.loc[3, "MOS"] = "good"
    return rows


@pytest.mark.parametrize(("problem", "message"), [
    ("unknown", r"1 sheet row\(s\) name no AE of the study: row 4 \('img9__fgsm-eps0.01'\)"),
    ("duplicate", r"duplicate entries in the sheet: row 3 \('img0__fgsm-eps0.03'\), "
                  r"row 7 \('img0__fgsm-eps0.03'\)"),
    ("missing", r"lacks 'Std' \(for mos_std\); its columns are: 'Image name', 'MOS', 'N'"),
    ("nonnumeric", r"mos column 'MOS' is not a number in row 5 \('good'\)"),
])
def test_broken_sheets_name_the_offending_rows(study, tmp_path, problem, message):
    sheet = tmp_path / "scores.csv"
    broken(sheet_rows(study), problem).to_csv(sheet, index=False)
    with pytest.raises(MosImportError, match=message):
        import_mos(study, sheet, mapping=MAPPING)
    assert not (study / "mos.parquet").exists()


def test_require_mos_explains_how_to_import(study):
    frame = with_mos(pd.read_parquet(study / "scored_manifest.parquet"), study)
    with pytest.raises(MissingMosError, match="no MOS in this study: import opinion scores "
                       "with `advqa evaluate import"):
        require_mos(frame)


@pytest.fixture
def advqa(monkeypatch):
    """The advqa command with `evaluate` registered (main.py lists it separately)."""
    if evaluate_command not in cli_main.SUBCOMMANDS:
        monkeypatch.setattr(cli_main, "SUBCOMMANDS", (*cli_main.SUBCOMMANDS, evaluate_command))
    return cli_main.main


def test_correlations_without_mos_exit_2(study, advqa, capsys):
    assert advqa(["evaluate", "correlations", str(study)]) == 2
    assert "no MOS in this study: import opinion scores" in capsys.readouterr().err


def test_import_then_correlations_write_outputs(study, advqa, tmp_path, capsys):
    sheet = tmp_path / "scores.csv"
    sheet_rows(study).to_csv(sheet, index=False)
    mapping = "id=Image name,mos=MOS,mos_std=Std,n_ratings=N"
    assert advqa(["evaluate", "import", str(study), str(sheet), "--map", mapping]) == 0
    assert advqa(["evaluate", "correlations", str(study), "--group", "none"]) == 0
    output = capsys.readouterr().out
    assert "srocc" in output and "psnr" in output
    table = pd.read_parquet(study / "correlations.parquet")
    assert table.loc[table["criterion"] == "srocc", "psnr"].iloc[0] == pytest.approx(1.0)
    assert (study / "correlations.csv").is_file()
    assert (study / "scatter.png").read_bytes().startswith(b"\x89PNG")


def test_bad_import_exits_2_listing_rows(study, advqa, tmp_path, capsys):
    sheet = tmp_path / "scores.csv"
    broken(sheet_rows(study), "unknown").to_csv(sheet, index=False)
    assert advqa(["evaluate", "import", str(study), str(sheet), "--map",
                  "id=Image name,mos=MOS"]) == 2
    assert "row 4 ('img9__fgsm-eps0.01')" in capsys.readouterr().err


def test_xlsx_without_openpyxl_says_how_to_install(study, tmp_path, monkeypatch):
    path = tmp_path / "scores.xlsx"
    path.write_bytes(b"PK")  # never opened: the import fails first
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(ImportError, match="pip install openpyxl"):
        import_mos(study, path, mapping=MAPPING)
