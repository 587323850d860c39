"""Importing opinion scores from spreadsheets, and the evaluate command."""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from advqa.cli import evaluate as evaluate_command
from advqa.cli import main as cli_main
from advqa.evaluate import correlations
from advqa.evaluate.mos import (
    MissingMosError,
    MosImportError,
    MosSourceError,
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
    update = import_mos(study, sheet, mapping=MAPPING)
    table = update.rows
    assert list(table.columns) == ["id", "mos", "mos_std", "n_ratings", "mos_source"]
    assert set(table["mos_source"]) == {"import:scores.csv"}
    assert (update.added, update.replaced, update.kept) == (10, 0, {})
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
                                "strength": "Eps", "mos": "MOS"}).rows
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


# -- MOS sources: nothing overwritten silently (issue 11, section 3) ----------------------

def ratings_for(ids, scores=(2, 3, 4)) -> pd.DataFrame:
    """Ratings of three raters for ``ids``, as the rating app stores them."""
    return pd.DataFrame([(f"rater-{r:03d}", item, score) for item in ids
                         for r, score in enumerate(scores)],
                        columns=["rater", "item_id", "score"])


def test_annotate_export_keeps_imported_mos(study, tmp_path, advqa, capsys):
    from advqa.annotate.export import export_mos

    sheet = tmp_path / "scores.csv"
    sheet_rows(study, count=10).to_csv(sheet, index=False)
    import_mos(study, sheet, mapping=MAPPING)
    imported = load_mos(study)
    ids = list(pd.read_parquet(study / "manifest.parquet")["id"])
    manifest = study / "manifest.parquet"
    # Two items the sheet did not score, exported from the rating app.
    result = export_mos(ratings_for(ids[10:]), tmp_path / "a.csv", manifest=manifest,
                        screen=False, mos_source="annotate:ratings.sqlite")
    stored = load_mos(study).set_index("id")
    assert len(stored) == 12
    assert stored.loc[ids[:10], "mos_source"].eq("import:scores.csv").all()
    assert stored.loc[ids[:10], "mos"].tolist() == imported["mos"].tolist()
    assert stored.loc[ids[10:], "mos_source"].eq("annotate:ratings.sqlite").all()
    assert (result.study.added, result.study.replaced) == (2, 0)
    assert result.study.kept == {"import:scores.csv": 10}
    assert "kept 10 from 'import:scores.csv'" in result.study.summary()
    # Exporting the same database again replaces its own rows only: idempotent.
    again = export_mos(ratings_for(ids[10:]), tmp_path / "a.csv", manifest=manifest,
                       screen=False, mos_source="annotate:ratings.sqlite")
    assert (again.study.added, again.study.replaced) == (0, 2)
    pd.testing.assert_frame_equal(load_mos(study), stored.reset_index())
    # An item the sheet scored: refused, naming it; nothing written, not even the CSV.
    before = (study / "mos.parquet").read_bytes()
    with pytest.raises(MosSourceError, match=rf"1 from 'import:scores.csv': '{ids[3]}'"):
        export_mos(ratings_for(ids[3:4] + ids[10:]), tmp_path / "b.csv", manifest=manifest,
                   screen=False, mos_source="annotate:ratings.sqlite")
    assert (study / "mos.parquet").read_bytes() == before
    assert not (tmp_path / "b.csv").exists()
    # Asked explicitly, the other source's row is replaced, and that is reported.
    forced = export_mos(ratings_for(ids[3:4] + ids[10:], (5, 5, 5)), tmp_path / "b.csv",
                        manifest=manifest, screen=False, replace_source=True,
                        mos_source="annotate:ratings.sqlite")
    assert forced.study.overridden == {"import:scores.csv": [ids[3]]}
    assert forced.study.kept == {"import:scores.csv": 9}
    assert load_mos(study).set_index("id").loc[ids[3], "mos"] == 5.0


def test_import_never_clobbers_an_annotate_export(study, tmp_path, advqa, capsys):
    from advqa.annotate.export import export_mos

    ids = list(pd.read_parquet(study / "manifest.parquet")["id"])
    export_mos(ratings_for(ids[:2]), tmp_path / "a.csv", manifest=study / "manifest.parquet",
               screen=False, mos_source="annotate:ratings.sqlite")
    exported = load_mos(study)
    sheet = tmp_path / "scores.csv"
    sheet_rows(study).to_csv(sheet, index=False)  # all 12 items, the 2 exported ones too
    mapping = "id=Image name,mos=MOS,mos_std=Std,n_ratings=N"
    assert advqa(["evaluate", "import", str(study), str(sheet), "--map", mapping]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite MOS from another source" in err
    assert f"2 from 'annotate:ratings.sqlite': '{ids[0]}', '{ids[1]}'" in err
    pd.testing.assert_frame_equal(load_mos(study), exported)
    # The sheet without those two rows goes in beside the export, and says so.
    sheet_rows(study).iloc[2:].to_csv(sheet, index=False)
    assert advqa(["evaluate", "import", str(study), str(sheet), "--map", mapping]) == 0
    out = capsys.readouterr().out
    assert "MOS source 'import:scores.csv': 10 added, 0 replaced" in out
    assert "kept 2 from 'annotate:ratings.sqlite'" in out
    stored = load_mos(study)
    assert stored["mos_source"].value_counts().to_dict() == {
        "import:scores.csv": 10, "annotate:ratings.sqlite": 2}
    # Re-importing the same file replaces its own rows and nothing else.
    assert advqa(["evaluate", "import", str(study), str(sheet), "--map", mapping]) == 0
    assert "0 added, 10 replaced" in capsys.readouterr().out
    pd.testing.assert_frame_equal(load_mos(study), stored)


def test_correlations_refuse_to_pool_sources_silently(study, tmp_path, advqa, capsys):
    from advqa.annotate.export import export_mos

    ids = list(pd.read_parquet(study / "manifest.parquet")["id"])
    sheet = tmp_path / "scores.csv"
    sheet_rows(study, count=6).to_csv(sheet, index=False)
    import_mos(study, sheet, mapping=MAPPING)
    ratings = pd.concat([ratings_for([item], (score, score + 1, score + 2))
                         for item, score in zip(ids[6:], [1, 3, 2, 1, 2, 3], strict=True)])
    export_mos(ratings, tmp_path / "a.csv", manifest=study / "manifest.parquet",
               screen=False, remove_outliers=False, mos_source="annotate:ratings.sqlite")
    command = ["evaluate", "correlations", str(study), "--group", "none", "--no-plot"]
    assert advqa(command) == 2
    err = capsys.readouterr().err
    assert "MOS from 2 sources: 'annotate:ratings.sqlite' (6 AEs), 'import:scores.csv' " \
           "(6 AEs)" in err and "--mos-source" in err
    assert advqa([*command, "--mos-source", "import:scores.csv"]) == 0
    out = capsys.readouterr().out
    assert "6 rated AEs; MOS source: import:scores.csv (6 AEs)" in out
    table = pd.read_parquet(study / "correlations.parquet").set_index("criterion")
    assert table.loc["srocc", "psnr"] == pytest.approx(1.0)  # the sheet's MOS = psnr / 10
    assert advqa([*command, "--mos-source", "import:scores.csv,annotate:ratings.sqlite"]) == 0
    assert "12 rated AEs" in capsys.readouterr().out
    assert advqa([*command, "--mos-source", "nope"]) == 2
    assert "no MOS from 'nope'" in capsys.readouterr().err


def test_correlations_accept_items_rated_once(study, tmp_path, advqa, capsys):
    from advqa.annotate.export import export_mos

    # 12 items: 4 rated by three raters, 8 rated once (their std is NaN).
    ids = list(pd.read_parquet(study / "manifest.parquet")["id"])
    psnr = pd.read_parquet(study / "scored_manifest.parquet").set_index("id")["psnr"]
    score = {item: int(np.clip(round(psnr[item] / 10), 1, 5)) for item in ids}
    ratings = pd.concat([ratings_for([item], (score[item],) * (3 if index < 4 else 1))
                         for index, item in enumerate(ids)])
    export_mos(ratings, tmp_path / "a.csv", manifest=study / "manifest.parquet",
               screen=False, remove_outliers=False)
    stored = load_mos(study)
    assert stored["mos_std"].isna().sum() == 8 and len(stored) == 12
    assert advqa(["evaluate", "correlations", str(study), "--group", "none",
                  "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "agreement with MOS (12 rated AEs" in out
    assert "outlier_ratio: only the 4 AEs with a rating std count (8 have none" in out
    table = pd.read_parquet(study / "correlations.parquet").set_index("criterion")
    expected = correlations(psnr[ids].to_numpy(), [score[item] for item in ids])
    assert table.loc["srocc", "psnr"] == pytest.approx(expected["srocc"])
    assert not np.isnan(table.loc["outlier_ratio", "psnr"])


@pytest.mark.parametrize(("values", "scale", "flagged"), [
    ({2: "-5", 7: "99"}, None, r"2 MOS value\(s\) lie far outside the declared scale 1–5: "
                               r"row 4 \('-5'\), row 9 \('99'\)"),
    ({2: "0.7", 7: "5.3"}, None, None),  # within 10% of the scale's width: no warning
    ({2: "-15", 7: "99"}, (0, 100), r"1 MOS value\(s\).* 0–100: row 4 \('-15'\)$"),
])
def test_mos_far_outside_the_scale_warns(study, tmp_path, values, scale, flagged):
    rows = sheet_rows(study)
    for row, value in values.items():
        rows.loc[row, "MOS"] = value
    sheet = tmp_path / "scores.csv"
    rows.to_csv(sheet, index=False)
    options = {} if scale is None else {"scale": scale}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        update = import_mos(study, sheet, mapping=MAPPING, **options)
    messages = [str(warning.message) for warning in caught]
    if flagged is None:
        assert messages == []
    else:
        assert len(messages) == 1 and re.search(flagged, messages[0].split(". Check")[0])
    assert len(update.rows) == 12  # a warning, the values are still stored


@pytest.mark.parametrize(("column", "value", "message"), [
    ("MOS", "inf", r"mos column 'MOS' is not a number in row 4 \('inf'\)"),
    ("MOS", "nan", r"mos column 'MOS' is not a number in row 4 \('nan'\)"),
    ("Std", "-inf", r"mos_std column 'Std' is not a number in row 4 \('-inf'\)"),
    ("Std", "-0.5", r"mos_std column 'Std' is negative in row 4 \('-0.5'\)"),
    ("N", "0", r"n_ratings column 'N' is below 1 in row 4 \('0'\)"),
])
def test_non_finite_or_impossible_scores_are_errors(study, tmp_path, column, value, message):
    rows = sheet_rows(study)
    rows.loc[2, column] = value
    sheet = tmp_path / "scores.csv"
    rows.to_csv(sheet, index=False)
    with pytest.raises(MosImportError, match=message):
        import_mos(study, sheet, mapping=MAPPING)
    assert not (study / "mos.parquet").exists()


def test_scale_must_be_low_high(study, tmp_path):
    sheet = tmp_path / "scores.csv"
    sheet_rows(study).to_csv(sheet, index=False)
    for bad in ((5, 1), (1,), "1-5", (1, float("inf"))):
        with pytest.raises(ValueError, match="scale"):
            import_mos(study, sheet, mapping=MAPPING, scale=bad)


def test_sources_are_named_and_old_tables_read_as_unrecorded(study, tmp_path):
    from advqa.annotate.export import database_source, export_mos

    assert database_source(tmp_path / "lab" / "ratings.sqlite") == "annotate:ratings.sqlite"
    assert database_source("postgresql://user:secret@db.example/study1") == "annotate:study1"
    ids = list(pd.read_parquet(study / "manifest.parquet")["id"])
    # A mos.parquet from before sources were recorded: its rows are not overwritten.
    pd.DataFrame({"id": ids[:3], "mos": [1.0, 2.0, 3.0], "mos_std": 0.5,
                  "n_ratings": 10}).to_parquet(study / "mos.parquet", index=False)
    assert set(load_mos(study)["mos_source"]) == {"unrecorded"}
    manifest = study / "manifest.parquet"
    with pytest.raises(MosSourceError, match="3 from 'unrecorded'"):
        export_mos(ratings_for(ids[:4]), tmp_path / "a.csv", manifest=manifest, screen=False)
    result = export_mos(ratings_for(ids[3:5]), tmp_path / "a.csv", manifest=manifest,
                        screen=False)
    assert (result.study.added, result.study.kept) == (2, {"unrecorded": 3})
    # Exporting again with an item no longer scored removes it, and says so.
    result = export_mos(ratings_for(ids[3:4]), tmp_path / "a.csv", manifest=manifest,
                        screen=False)
    assert (result.study.added, result.study.replaced, result.study.dropped) == (0, 1, 1)
    assert "1 no longer scored removed" in result.study.summary()
    assert sorted(load_mos(study)["id"]) == sorted(ids[:4])


def test_import_command_takes_the_scale(study, tmp_path, advqa, capsys):
    rows = sheet_rows(study)
    rows.loc[2, "MOS"] = "80"
    sheet = tmp_path / "scores.csv"
    rows.to_csv(sheet, index=False)
    command = ["evaluate", "import", str(study), str(sheet), "--map", "id=Image name,mos=MOS"]
    assert advqa(command) == 0
    assert "warning: scores.csv: 1 MOS value(s) lie far outside the declared scale 1–5: " \
           "row 4 ('80')" in capsys.readouterr().err
    assert advqa([*command, "--scale", "0,100"]) == 0
    assert "warning" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        advqa([*command, "--scale", "5,1"])
    assert "finite low < high" in capsys.readouterr().err
