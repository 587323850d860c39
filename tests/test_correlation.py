"""Metric-vs-MOS agreement: coefficients, fits, significance, tables and plots."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from advqa.evaluate import compare_metrics, correlation_table, correlations, fitted_curve
from advqa.evaluate import correlation as correlation_module
from advqa.evaluate.plots import scatter_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def logistic_data(n=80, noise=0.1, seed=0):
    """Scores whose MOS is a noisy logistic of them: non-linear but monotone."""
    generator = np.random.default_rng(seed)
    pred = np.sort(generator.uniform(0.0, 10.0, n))
    mos = 1.0 + 4.0 / (1.0 + np.exp(-1.5 * (pred - 5.0))) + generator.normal(0, noise, n)
    return pred, mos


def test_rank_correlations_equal_scipy():
    pred, mos = logistic_data()
    result = correlations(pred, mos)
    assert result["srocc"] == pytest.approx(abs(stats.spearmanr(pred, mos)[0]), abs=1e-12)
    assert result["krocc"] == pytest.approx(abs(stats.kendalltau(pred, mos)[0]), abs=1e-12)
    assert result["n"] == len(pred)
    assert result["fit"] == "logistic"


def test_logistic_fit_beats_raw_pearson():
    pred, mos = logistic_data()
    result = correlations(pred, mos)
    assert result["plcc"] >= abs(stats.pearsonr(pred, mos)[0])
    assert result["plcc"] > 0.99


def test_lower_is_better_metric_reports_absolute_values():
    pred, mos = logistic_data()
    result = correlations(-pred, mos)
    assert result["srocc"] > 0.9 and result["krocc"] > 0.7 and result["plcc"] > 0.99


def test_rmse_matches_hand_computation_from_fitted_params():
    pred, mos = logistic_data(seed=3)
    curve = fitted_curve(pred, mos)
    b1, b2, b3, b4, b5 = curve.params
    by_hand = b1 * (0.5 - 1.0 / (1.0 + np.exp(b2 * (pred - b3)))) + b4 * pred + b5
    assert correlations(pred, mos)["rmse"] == pytest.approx(
        np.sqrt(np.mean((mos - by_hand) ** 2)), rel=1e-9)
    assert correlations(pred, mos)["plcc"] == pytest.approx(stats.pearsonr(by_hand, mos)[0])


def test_outlier_ratio_counts_errors_beyond_two_standard_deviations():
    pred, mos = logistic_data(noise=0.3, seed=4)
    std = np.full(len(pred), 0.3)
    fitted = fitted_curve(pred, mos)(pred)
    expected = np.mean(np.abs(mos - fitted) > 0.6)
    assert correlations(pred, mos, mos_std=std)["outlier_ratio"] == pytest.approx(expected)
    assert 0.0 < expected < 0.2


def test_items_without_a_std_count_everywhere_but_the_outlier_ratio():
    # Items rated once have no std (NaN): they still count in SROCC, PLCC, ...
    pred, mos = logistic_data(n=40, noise=0.3, seed=4)
    std = np.full(40, 0.3)
    std[::2] = np.nan
    with pytest.warns(UserWarning, match="outlier_ratio uses the 20 of 40 items that have "
                      "a mos_std; 20 have none"):
        result = correlations(pred, mos, mos_std=std)
    plain = correlations(pred, mos)
    assert result["n"] == 40
    for name in ("srocc", "krocc", "plcc", "rmse"):
        assert result[name] == pytest.approx(plain[name]), name
    error = np.abs(mos - fitted_curve(pred, mos)(pred))
    assert result["outlier_ratio"] == pytest.approx(np.mean(error[1::2] > 0.6))
    # Fewer than 5 items with a std is no reason to fail, none gives a NaN outlier ratio.
    std[:] = np.nan
    std[:3] = 0.3
    with pytest.warns(UserWarning, match="uses the 3 of 40"):
        assert correlations(pred, mos, mos_std=std)["n"] == 40
    with pytest.warns(UserWarning, match="uses the 0 of 40"):
        assert np.isnan(correlations(pred, mos, mos_std=np.full(40, np.nan))["outlier_ratio"])
    frame = study_frame().assign(std=np.where(np.arange(60) % 3, 0.4, np.nan))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = correlation_table(frame, ["psnr", "ssim"], mos_std="std", group=None,
                                  criteria=("srocc", "outlier_ratio", "n"))
    said = [str(w.message) for w in caught if "outlier_ratio uses" in str(w.message)]
    assert said == ["outlier_ratio uses the 40 of 60 items that have a mos_std; 20 have "
                    "none (e.g. rated once) and count in the other criteria only"]
    assert table.loc[("all", "srocc"), "psnr"] == pytest.approx(
        correlations(frame["psnr"], frame["mos"])["srocc"])


def test_constant_predictions_give_nan_and_a_warning():
    _, mos = logistic_data()
    with pytest.warns(UserWarning, match="constant predictions"):
        result = correlations(np.ones_like(mos), mos)
    assert all(np.isnan(result[name]) for name in ("srocc", "krocc", "plcc", "rmse"))
    assert result["fit"] is None


def test_constant_mos_gives_nan_and_a_warning():
    pred, _ = logistic_data()
    with pytest.warns(UserWarning, match="constant MOS"):
        assert np.isnan(correlations(pred, np.full(len(pred), 3.0))["srocc"])


def test_fewer_than_five_items_is_an_error():
    with pytest.raises(ValueError, match="at least 5 items"):
        correlations([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        correlations(np.arange(6.0), np.arange(7.0))


def test_nan_items_are_dropped_with_a_count():
    pred, mos = logistic_data()
    pred[[3, 10]] = np.nan
    mos[20] = np.nan
    with pytest.warns(UserWarning, match="dropped 3 of 80"):
        result = correlations(pred, mos)
    assert result["n"] == 77


def test_failed_logistic_fit_falls_back_to_a_line(monkeypatch):
    def failing_fit(*arguments, **options):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(optimize, "curve_fit", failing_fit)
    pred, mos = logistic_data()
    result = correlations(pred, mos)
    assert result["fit"] == "linear"
    assert result["plcc"] == pytest.approx(abs(stats.pearsonr(pred, mos)[0]))
    assert fitted_curve(pred, mos).kind == "linear"


def test_bootstrap_intervals_contain_estimate_and_repeat_with_seed():
    pred, mos = logistic_data(n=40, noise=0.4)
    first = correlations(pred, mos, mos_std=np.full(40, 0.4), bootstrap=60, seed=7)
    again = correlations(pred, mos, mos_std=np.full(40, 0.4), bootstrap=60, seed=7)
    other = correlations(pred, mos, mos_std=np.full(40, 0.4), bootstrap=60, seed=8)
    for name in ("srocc", "krocc", "plcc", "rmse", "outlier_ratio"):
        low, high = first[f"{name}_ci"]
        assert low <= first[name] <= high, name
        assert again[f"{name}_ci"] == first[f"{name}_ci"]
    assert other["srocc_ci"] != first["srocc_ci"]


def test_f_test_matches_scipy_on_hand_computed_variances():
    pred, mos = logistic_data(n=60, noise=0.2, seed=5)
    worse = pred + np.random.default_rng(9).normal(0, 1.5, len(pred))
    result = compare_metrics(pred, worse, mos)
    residual_a = mos - fitted_curve(pred, mos)(pred)
    residual_b = mos - fitted_curve(worse, mos)(worse)
    f_value = np.var(residual_a, ddof=1) / np.var(residual_b, ddof=1)
    p_value = 2 * min(stats.f.cdf(f_value, 59, 59), stats.f.sf(f_value, 59, 59))
    assert result["f"] == pytest.approx(f_value)
    assert result["p_value"] == pytest.approx(p_value)
    assert result["dof"] == (59, 59)
    assert result["better"] == "a"


def study_frame(seed=0):
    pred, mos = logistic_data(n=60, seed=seed)
    generator = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"ae{index}" for index in range(60)],
        "attack": ["fgsm"] * 30 + ["pgd"] * 27 + ["cw"] * 3,
        "psnr": pred,
        "ssim": -pred + generator.normal(0, 0.5, 60),
        "mos": mos,
    })


def test_table_has_group_blocks_and_pooled_row():
    frame = study_frame()
    with pytest.warns(UserWarning, match="cw: only 3 items"):
        table = correlation_table(frame, ["psnr", "ssim"])
    assert list(table.columns) == ["psnr", "ssim"]
    assert table.index.names == ["attack", "criterion"]
    assert list(table.index.get_level_values(0).unique()) == ["cw", "fgsm", "pgd", "all"]
    assert table.shape == (16, 2)
    assert table.loc[("cw", "srocc")].isna().all()
    pooled = correlations(frame["psnr"], frame["mos"])
    assert table.loc[("all", "srocc"), "psnr"] == pytest.approx(pooled["srocc"])
    assert table.loc[("fgsm", "plcc"), "psnr"] > 0.9


def test_table_without_groups_and_with_intervals():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = correlation_table(study_frame(), ["psnr"], group=None, criteria=("srocc",),
                                  bootstrap=20)
    assert list(table.index) == [("all", "srocc"), ("all", "srocc_low"), ("all", "srocc_high")]


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_scatter_plot_writes_an_image(tmp_path, suffix):
    path = scatter_plots(study_frame(), ["psnr", "ssim"], tmp_path / f"scatter{suffix}")
    content = path.read_bytes()
    if suffix == ".png":
        assert content.startswith(PNG_SIGNATURE)
    else:
        assert b"<svg" in content[:1000]


def test_module_exposes_the_vqeg_logistic():
    assert correlation_module.logistic5(3.0, 2.0, 1.0, 3.0, 0.0, 1.0) == pytest.approx(1.0)
