"""AEQA applications: L-BFGS maximisation of AEQA, attack comparison, best settings."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from advqa.evaluate.applications import (
    AEQAObjective,
    attack_comparison,
    best_settings,
    common_budget,
    compare_with_pgd,
    maximise_aeqa,
    wilson_interval,
)
from advqa.quality import aeqa_scores


def test_lbfgs_raises_aeqa_and_fools_the_model(default_model, imagenet_batch):
    images, labels = imagenet_batch[0][:6], imagenet_batch[1][:6]
    result = maximise_aeqa(default_model, images, steps=20)
    assert (result["aeqa"] > result["start_aeqa"]).all()
    assert result["success"].float().mean() >= 0.5  # Table 7: L-BFGS fools only some
    assert result["images"].min() >= 0 and result["images"].max() <= 1
    recomputed = aeqa_scores(default_model, images, result["images"])["aeqa"]
    torch.testing.assert_close(recomputed.detach(), result["aeqa"], atol=1e-5, rtol=1e-5)
    table = compare_with_pgd(default_model, images, labels, result, steps=3)
    assert list(table.method) == ["lbfgs-aeqa", "pgd-linf"]
    assert table.success_rate.iloc[1] >= table.success_rate.iloc[0] or table.eps.iloc[1] == 16 / 255


def test_objective_reports_changed_predictions(default_model, imagenet_batch):
    images = imagenet_batch[0][:2]
    objective = AEQAObjective(default_model, images)
    evaluation = objective.evaluate(images)
    assert not evaluation.success.any()
    torch.testing.assert_close(evaluation.loss, torch.zeros(2), atol=1e-5, rtol=0)


@pytest.fixture
def scored():
    rows = []
    for attack, peak in (("pgd", 0.03), ("fgsm", 0.1)):
        for strength in (0.003, 0.03, 0.1):
            for value in (0.5, 0.7):
                aeqa = value + (0.2 if strength == peak else 0.0)
                rows.append({"attack": attack, "norm": "linf", "strength": strength,
                             "strength_name": "eps", "aeqa": aeqa, "js": value / 2,
                             "advdss": 1 - strength})
    return pd.DataFrame(rows)


def test_best_settings_finds_the_peak(scored):
    peaks = best_settings(scored).set_index("attack")
    assert peaks.loc["pgd", "best_strength"] == 0.03
    assert peaks.loc["fgsm", "best_strength"] == 0.1
    assert peaks.loc["pgd", "peak_mean_aeqa"] == pytest.approx(0.8)


def test_attack_comparison_at_one_budget(scored):
    attempts = pd.DataFrame([{"attack": "pgd", "norm": "linf", "strength": 0.03, "tried": 20,
                              "correct": 17, "fooled": 17},
                             {"attack": "fgsm", "norm": "linf", "strength": 0.03, "tried": 20,
                              "correct": 17, "fooled": 9}])
    table = attack_comparison(scored, attempts, norm="linf", strength=0.03).set_index("attack")
    assert table.loc["pgd", "mean_aeqa"] == pytest.approx(0.8)
    assert table.loc["pgd", "aeqa_low"] < 0.8 < table.loc["pgd", "aeqa_high"]
    assert table.loc["fgsm", "success_rate"] == pytest.approx(9 / 17)
    assert common_budget(scored) == ("linf", 0.003)


def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    for successes, trials in ((9, 17), (0, 5), (20, 20)):
        expected = binomtest(successes, trials).proportion_ci(method="wilson")
        low, high = wilson_interval(successes, trials)
        assert low == pytest.approx(expected.low, abs=1e-9)
        assert high == pytest.approx(expected.high, abs=1e-9)


def test_write_applications_stores_what_the_report_draws(scored, tmp_path):
    """The curves table and peaks go into the study, read back through StudyDir."""
    from advqa.evaluate.applications import aeqa_by_strength, write_applications
    from advqa.study import StudyDir

    study = StudyDir(tmp_path)
    with pytest.raises(FileNotFoundError, match="advqa score --study"):
        write_applications(tmp_path)
    study.write_scored_manifest(scored)
    assert write_applications(tmp_path) == study.applications.path
    applications = study.applications
    pd.testing.assert_frame_equal(applications.curves(), aeqa_by_strength(scored))
    pd.testing.assert_frame_equal(applications.best_settings(), best_settings(scored))
    assert set(applications.attack_comparison().attack) == {"pgd", "fgsm"}
    assert applications.curves_figure().startswith(b"\x89PNG")
