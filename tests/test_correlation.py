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


# --- The vectorised bootstrap against the per-resample computation it replaces -------------


def logistic_jacobian(x, b1, b2, b3, b4, b5):
    """The logistic's Jacobian, as the per-resample fit used it."""
    sigmoid = 1.0 / (1.0 + np.exp(np.clip(b2 * (x - b3), -500.0, 500.0)))
    slope = sigmoid * (1.0 - sigmoid)
    return np.column_stack([0.5 - sigmoid, b1 * slope * (x - b3), -b1 * slope * b2, x,
                            np.ones_like(x)])


def plain_bootstrap(pred, mos, mos_std, *, resamples, seed):
    """The bootstrap as it was written before it was vectorised, one resample at a time.

    Per resample: indices from ``default_rng(seed).integers(0, n, n)``, constant resamples
    skipped, scipy's rank correlations, ``curve_fit`` of the logistic from the full-sample
    fit (1000 evaluations; a least-squares line when it fails), Pearson after the fit.
    Returns the per-resample values and which resamples' fits failed.
    """
    start = fitted_curve(pred, mos).params
    generator = np.random.default_rng(seed)
    values = {name: [] for name in ("srocc", "krocc", "plcc", "rmse", "outlier_ratio")}
    failed = []
    for _ in range(resamples):
        index = generator.integers(0, len(pred), len(pred))
        x, y, std = pred[index], mos[index], mos_std[index]
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params, _ = optimize.curve_fit(correlation_module.logistic5, x, y, p0=start,
                                               jac=logistic_jacobian, maxfev=1000)
            fitted = correlation_module.logistic5(x, *params)
            failed.append(False)
        except RuntimeError:
            fitted = np.polyval(np.polyfit(x, y, 1), x)
            failed.append(True)
        values["srocc"].append(abs(stats.spearmanr(x, y)[0]))
        values["krocc"].append(abs(stats.kendalltau(x, y)[0]))
        values["plcc"].append(abs(stats.pearsonr(fitted, y)[0]))
        values["rmse"].append(np.sqrt(np.mean((y - fitted) ** 2)))
        values["outlier_ratio"].append(np.mean(np.abs(y - fitted) > 2.0 * std))
    return {name: np.array(value) for name, value in values.items()}, np.array(failed)


def test_fast_bootstrap_matches_a_plain_curve_fit_loop():
    # A well-determined logistic: every warm-started curve_fit converges. Tolerances: the
    # rank correlations are the same numbers (float rounding, 1e-12); PLCC and RMSE come
    # from two different iterations stopping at the same minimum with curve_fit's ftol
    # 1.5e-8 on the relative sum of squares, and are stationary there, so they agree far
    # below that (measured ≤ 1.5e-10): 1e-8 absolute; the outlier ratio counts the same.
    pred, mos = logistic_data(n=60, noise=0.3, seed=0)
    std = np.full(60, 0.3)
    plain, failed = plain_bootstrap(pred, mos, std, resamples=200, seed=7)
    result = correlations(pred, mos, mos_std=std, bootstrap=200, seed=7)
    assert not failed.any() and result["bootstrap_linear"] == 0
    tolerance = {"srocc": 1e-12, "krocc": 1e-12, "plcc": 1e-8, "rmse": 1e-8, "outlier_ratio": 0}
    for name, values in plain.items():
        expected = np.nanpercentile(values, [2.5, 97.5])
        assert result[f"{name}_ci"] == pytest.approx(expected, abs=tolerance[name]), name
    # Resample by resample, too (the same index stream, drawn in one block here).
    index = np.random.default_rng(7).integers(0, 60, (200, 60))
    fast = correlation_module._resample_criteria(pred, mos, std, index,
                                                 [fitted_curve(pred, mos).params])
    for name, values in plain.items():
        np.testing.assert_allclose(fast[name], values, rtol=0, atol=tolerance[name] or 1e-15)


def weak_metric_data(n=40, seed=1):
    """A metric only loosely related to the MOS: its logistic fit is ill-determined."""
    generator = np.random.default_rng(seed)
    quality = generator.uniform(0.0, 10.0, n)
    mos = 1.0 + 4.0 / (1.0 + np.exp(-1.5 * (quality - 5.0))) + generator.normal(0, 0.3, n)
    return quality + generator.normal(0, 3.0, n), mos


def test_weak_metric_bootstrap_differs_only_where_curve_fit_gave_up_or_wandered():
    # The documented deviation, quantified: on a weak metric the 5-parameter curve_fit
    # creeps towards a step or a cubic and gives up on about a quarter of the resamples
    # (which then get a line); the reduced fit converges on them, with a sum of squares
    # never above the line's. Elsewhere the two agree on almost every resample.
    pred, mos = weak_metric_data()
    std = np.full(40, 0.3)
    plain, failed = plain_bootstrap(pred, mos, std, resamples=200, seed=7)
    index = np.random.default_rng(7).integers(0, 40, (200, 40))
    fast = correlation_module._resample_criteria(pred, mos, std, index,
                                                 [fitted_curve(pred, mos).params])
    np.testing.assert_allclose(fast["srocc"], plain["srocc"], atol=1e-12)
    np.testing.assert_allclose(fast["krocc"], plain["krocc"], atol=1e-12)
    assert failed.mean() > 0.1 and fast["linear"].sum() <= failed.sum()
    assert np.all(fast["rmse"][failed] <= plain["rmse"][failed] + 1e-12)
    same = np.isclose(fast["rmse"][~failed], plain["rmse"][~failed], rtol=1e-6, atol=0)
    assert same.mean() >= 0.85
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fits' overflows stay inside
        result = correlations(pred, mos, mos_std=std, bootstrap=100, seed=1)
    assert np.all(np.isfinite([result[f"{name}_ci"] for name in plain]))


def test_bootstrap_blocks_draw_the_same_resamples(monkeypatch):
    pred, mos = logistic_data(n=30, noise=0.4, seed=2)
    std = np.full(30, 0.4)
    whole = correlations(pred, mos, mos_std=std, bootstrap=50, seed=3)
    monkeypatch.setattr(correlation_module, "ROWS_PER_BLOCK", 7 * 30)  # 8 blocks, one partial
    assert correlations(pred, mos, mos_std=std, bootstrap=50, seed=3) == whole


def test_kendall_of_resamples_equals_scipy_with_ties(monkeypatch):
    generator = np.random.default_rng(4)
    pred = np.round(generator.normal(size=50), 1)  # many ties, as in linf or mad
    mos = np.round(pred + generator.normal(size=50), 1)
    index = generator.integers(0, 50, (40, 50))
    expected = [stats.kendalltau(pred[row], mos[row])[0] for row in index]
    np.testing.assert_allclose(correlation_module._kendall_rows(pred, mos, index), expected,
                               rtol=0, atol=1e-12)
    monkeypatch.setattr(correlation_module, "KENDALL_MATRIX_ITEMS", 10)  # scipy per resample
    np.testing.assert_allclose(correlation_module._kendall_rows(pred, mos, index), expected,
                               rtol=0, atol=1e-12)


def test_failed_resample_fits_fall_back_to_a_line_and_are_counted(monkeypatch):
    # No evaluations allowed: every resample's logistic fails, as curve_fit's would after
    # maxfev, and the resample is mapped by its least-squares line, as before.
    monkeypatch.setattr(correlation_module, "BOOTSTRAP_EVALUATIONS", 0)
    pred, mos = logistic_data(n=40, noise=0.4)
    result = correlations(pred, mos, bootstrap=60, seed=5)
    generator = np.random.default_rng(5)
    lines = [abs(stats.pearsonr(pred[index], mos[index])[0])
             for index in (generator.integers(0, 40, 40) for _ in range(60))]
    assert result["bootstrap_linear"] == 60
    assert result["plcc_ci"] == pytest.approx(np.percentile(lines, [2.5, 97.5]), abs=1e-12)


def test_linear_full_fit_bootstraps_from_each_resamples_starting_points(monkeypatch):
    pred, mos = logistic_data(n=60, noise=0.3)
    warm = correlations(pred, mos, bootstrap=100, seed=3)
    monkeypatch.setattr(correlation_module, "_fit_logistic", lambda *args, **kw: None)
    cold = correlations(pred, mos, bootstrap=100, seed=3)
    assert cold["fit"] == "linear" and cold["bootstrap_linear"] == 0
    # Three starts per resample find the same minima as the warm start on this data.
    for name in ("srocc", "krocc", "plcc", "rmse"):
        assert cold[f"{name}_ci"] == pytest.approx(warm[f"{name}_ci"], abs=1e-8), name
    index = np.random.default_rng(0).integers(0, 60, (20, 60))
    x, y = pred[index], mos[index]
    signed = [stats.spearmanr(x[row], y[row])[0] for row in range(20)]
    np.testing.assert_array_equal(
        correlation_module._starting_points_rows(x, y, np.array(signed)),
        [correlation_module._starting_points(x[row], y[row]) for row in range(20)])


BARS = []


class RecordingBar:
    """Stands in for tqdm: remembers its settings and updates."""

    def __init__(self, **settings):
        self.settings, self.updates = settings, 0
        BARS.append(self)

    def update(self, count=1):
        self.updates += count

    def close(self):
        pass


def test_table_repeats_with_its_seed_and_shows_progress_only_when_asked(monkeypatch):
    frame = study_frame()
    options = {"group": "attack", "bootstrap": 30, "criteria": ("srocc", "plcc", "rmse")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 3-item cw group
        first = correlation_table(frame, ["psnr", "ssim"], seed=4, **options)
        monkeypatch.setattr(correlation_module, "tqdm", RecordingBar)
        again = correlation_table(frame, ["psnr", "ssim"], seed=4, progress=True, **options)
        other = correlation_table(frame, ["psnr", "ssim"], seed=5, **options)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    assert not first.equals(other)
    shown, hidden = BARS[-2:]
    assert not shown.settings["disable"] and shown.settings["total"] == shown.updates == 8
    assert hidden.settings["disable"]  # the default: no bar


def test_correlations_command_passes_its_progress_option(monkeypatch, tmp_path):
    import argparse

    from advqa.cli import evaluate as command
    from advqa.evaluate import study

    seen = {}

    def fake_study_correlations(path, **options):
        seen.update(options)
        return study.StudyCorrelations(pd.DataFrame({"psnr": [1.0]}), 1, {"x": 1}, 1)

    monkeypatch.setattr(study, "study_correlations", fake_study_correlations)
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    for flags, shown in (([], True), (["--no-progress"], False)):
        arguments = parser.parse_args(["evaluate", "correlations", str(tmp_path), *flags])
        assert command.run(arguments) == 0 and seen["progress"] is shown
