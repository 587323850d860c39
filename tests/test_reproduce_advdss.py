"""``advqa reproduce advdss`` at smoke scale: files, invariants, resume, and the MOS path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from advqa.experiments import adversarial_quality as paper
from advqa.experiments import reproduce


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the suite shares two cores
    try:
        out = tmp_path_factory.mktemp("repro-advdss")
        written = reproduce("advdss", out, scale="smoke")
    finally:
        torch.set_num_threads(threads)
    return out, written


def test_smoke_writes_every_file_and_says_it_is_a_smoke(smoke):
    out, written = smoke
    assert {path.name for path in written} >= {"comparison.csv", "comparison.parquet",
                                                "reproduction.md", "reproduction.json"}
    record = json.loads((out / "reproduction.json").read_text())
    for name in record["files"]:
        assert (out / name).is_file(), name
    assert record["settings"]["scale"] == "smoke" and record["data"]["aes"] > 0
    text = (out / "reproduction.md").read_text()
    assert "SMOKE SCALE" in text and "| | paper | ours | difference | note |" in text
    assert "Tables 3–5 — agreement with people — are not measured" in text
    assert "Table 3 (agreement with MOS)" not in text  # no MOS, no Table 3 numbers


def test_rates_and_differences_hold(smoke):
    out, _ = smoke
    frame = pd.read_parquet(out / "comparison.parquet")
    rates = frame[frame.unit == "%"]["ours"].dropna()
    assert len(rates) and rates.between(0, 100).all()
    both = frame.dropna(subset=["paper", "ours"])
    assert np.allclose(both.difference, both.ours - both.paper)
    assert set(frame.table) >= {"Table 2 (AEs kept)", "Table 7 (L-BFGS on AEQA)",
                                "Figure 7 (best setting per attack)"}


def test_table6_is_computed_from_the_aes_and_ordered_by_aeqa(smoke):
    out, _ = smoke
    scores = pd.read_parquet(out / "scores.parquet")
    shared = pd.read_parquet(out / "table6_shared_budget.parquet")
    norm, strength = shared.norm.iloc[0], shared.strength.iloc[0]
    cell = scores[(scores.norm == norm) & np.isclose(scores.strength, strength)]
    expected = cell.groupby("attack").aeqa.mean()
    table = shared.set_index("attack")
    for attack, mean in expected.items():
        assert table.loc[attack, "mean_aeqa"] == pytest.approx(mean)
        assert table.loc[attack, "aes"] == (cell.attack == attack).sum()
    assert table.success_rate.between(0, 1).all()
    comparison = pd.read_parquet(out / "comparison.parquet")
    rows = comparison[comparison.table.str.startswith("Table 6 at")
                      & comparison.row.str.endswith(": AEQA")]
    listed = [row.split(":")[0] for row in rows.row]
    assert listed == list(shared.sort_values("mean_aeqa", ascending=False).attack)


def test_figure7_marks_are_each_curves_peak(smoke):
    out, _ = smoke
    scores = pd.read_parquet(out / "scores.parquet")
    peaks = pd.read_parquet(out / "figure7_best_settings.parquet")
    curves = scores.groupby(["attack", "norm", "strength"]).aeqa.mean()
    for row in peaks.itertuples():
        curve = curves.loc[(row.attack, row.norm)]
        assert row.peak_mean_aeqa == pytest.approx(curve.max())
        assert row.best_strength == pytest.approx(curve.idxmax())


def test_the_full_variant_is_advdss_itself(smoke):
    """Table 4's full row and Table 5's λ = 0.48 row are the registered metric's scores."""
    out, _ = smoke
    scores = pd.read_parquet(out / "scores.parquet")
    assert np.allclose(scores["advdss[AdvDSS]"], scores.advdss, atol=1e-5)
    assert np.allclose(scores["advdss[λ2=λ3=0.48]"], scores.advdss, atol=1e-5)
    assert not np.allclose(scores["advdss[AdvDSS w/o detection]"], scores.advdss, atol=1e-9)


def test_table7_pgd_reaches_the_lbfgs_success_or_its_last_budget(smoke):
    out, _ = smoke
    table = pd.read_parquet(out / "table7_lbfgs.parquet")
    lbfgs = table[table.method == "lbfgs-aeqa"].iloc[0]
    pgd = table[table.method == "pgd-linf"].iloc[0]
    assert 0 <= lbfgs.success_rate <= 1 and 0 <= lbfgs.mean_advdss <= 1
    assert pgd.success_rate >= lbfgs.success_rate or pgd.eps == pytest.approx(16 / 255)


def _finished_units(out) -> dict:
    import sqlite3

    counts = {}
    for ledger in (out / "study" / "ledger.sqlite", out / "variants.sqlite"):
        with sqlite3.connect(ledger) as connection:
            counts.update(connection.execute(
                "SELECT job, COUNT(*) FROM job_units GROUP BY job").fetchall())
    return counts


def test_mos_gives_tables_3_to_5_and_resumes_without_rebuilding(smoke, tmp_path):
    """A made-up MOS sheet (a test fixture, not people) exercises Tables 3-5; the re-run
    on the same folder builds and scores nothing again."""
    import torch

    out, _ = smoke
    files = sorted((out / "study" / "images" / "adv").glob("*.png"))
    before = [path.stat().st_mtime_ns for path in files]
    references = {path: path.read_bytes()
                  for path in (out / "study" / "images" / "ref").glob("*.png")}
    units = _finished_units(out)
    scores = pd.read_parquet(out / "scores.parquet")
    generator = np.random.default_rng(0)
    sheet = tmp_path / "mos.csv"
    pd.DataFrame({"id": scores.id, "mos": 1 + 4 * (1 - scores.ssim)
                  + generator.normal(0, 0.1, len(scores))}).to_csv(sheet, index=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reproduce("advdss", out, scale="smoke", mos=sheet)
    finally:
        torch.set_num_threads(threads)
    assert [path.stat().st_mtime_ns for path in files] == before
    assert all(path.read_bytes() == data for path, data in references.items())
    assert _finished_units(out) == units  # no build, score or variant unit ran again
    frame = pd.read_parquet(out / "comparison.parquet")
    table4 = frame[frame.table == "Table 4 (ablations)"]
    assert len(table4) == 4 * len(paper.TABLE_4) and table4.paper.notna().all()
    table5 = frame[frame.table == "Table 5 (λ2 = λ3)"]
    assert len(table5) == 4 * len(paper.TABLE_5)
    correlations = pd.concat([table4, table5])
    coefficients = correlations[~correlations.row.str.endswith("RMSE")].ours
    assert coefficients.between(0, 1).all()
    table3 = frame[frame.table == "Table 3 (agreement with MOS)"]
    assert table3.row.str.startswith("all:").sum() == 4 * len(paper.TABLE3_METRICS)
    rated = frame[frame.row == "AEs with MOS"].ours.iloc[0]
    assert rated == len(scores)
    assert "fig6_scatter.png" in json.loads((out / "reproduction.json").read_text())["files"]


def test_mos_is_an_advdss_option_only(tmp_path):
    with pytest.raises(ValueError, match="mos is an option of advdss"):
        reproduce("stego", tmp_path, scale="smoke", mos=tmp_path / "x.csv")
    with pytest.raises(ValueError, match="not found"):
        reproduce("advdss", tmp_path, scale="smoke", mos=tmp_path / "absent.csv")
