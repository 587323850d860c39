"""Minimal-strength search (issue 17 §2): bisection on an attack's strength per image."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

from advqa.attacks.perceptual import QUANTISED_TOLERANCE
from advqa.study.grid import AttackSpec
from advqa.study.minimal import SearchAxis, minimal_strength, search_axis

# Per image, the smallest L∞ ε that flips the linear model below (see linear_case).
THRESHOLDS = [0.004, 0.011, 0.03, 0.07, 0.15]


class Linear(nn.Module):
    """Two classes, logits (-z/2, z/2) with z = w·x + b."""

    def __init__(self, weight: torch.Tensor, bias: float):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = bias

    def forward(self, images):
        z = images.flatten(1) @ self.weight.flatten() + self.bias
        return torch.stack([-z / 2, z / 2], dim=1)


def linear_case(seed: int = 0):
    """Images x_i = 0.5 + s_i·sign(w), b = -0.5·Σw: z_i = s_i·‖w‖₁, so FGSM with L∞ ε
    (δ = -ε·sign(w)) flips the prediction exactly when ε > s_i. Pixels stay within
    [0.35, 0.65] and ε <= 0.3, so the [0, 1] box never binds."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(3, 8, 8, generator=generator, dtype=torch.float64).float()
    sign = weight.sign()
    images = torch.stack([0.5 + s * sign for s in THRESHOLDS])
    model = Linear(weight, -0.5 * float(weight.sum()))
    return model, images, torch.ones(len(THRESHOLDS), dtype=torch.long)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_found_strength_is_within_one_bisection_step(attack):
    model, images, labels = linear_case()
    settings = {"steps": 1, "step_size": None} if attack == "pgd" else {}
    settings = {k: v for k, v in settings.items() if v is not None}
    spec = AttackSpec(attack, "linf", 0.3, settings)
    result = minimal_strength(model, images, labels, spec, lower=0.3 / 256, upper=0.3,
                              rounds=8, quantise=False)
    assert result.found.all()
    step = math.log(result.step)
    for found, true in zip(result.strength.tolist(), THRESHOLDS, strict=True):
        assert true <= found * (1 + 1e-6)  # the found strength fools: at least the true one
        assert math.log(found) - math.log(true) <= step + 1e-9
    with torch.no_grad():
        assert (model(result.adversarial).argmax(1) != labels).all()
    assert (result.calls <= 8 + 1).all() and (result.calls == 9).all()


def test_upper_too_small_is_not_found():
    model, images, labels = linear_case()
    spec = AttackSpec("fgsm", "linf", 0.02)
    result = minimal_strength(model, images, labels, spec, lower=0.001, upper=0.02, rounds=6,
                              quantise=False)
    assert result.found.tolist() == [True, True, False, False, False]
    assert result.strength[2:].isnan().all()
    assert result.calls.tolist() == [7, 7, 1, 1, 1]
    assert all(0.004 <= s <= 0.02 for s in result.strength[:1].tolist())


def test_misclassified_reference_is_not_attacked_and_quantised_aes_fool():
    model, images, labels = linear_case()
    labels[0] = 0  # the model says 1: already wrong, nothing to fool
    spec = AttackSpec("fgsm", "linf", 0.3)
    result = minimal_strength(model, images, labels, spec, lower=0.3 / 256, upper=0.3,
                              rounds=5)
    assert not result.found[0] and result.calls[0] == 0
    assert result.found[1:].all()
    found = result.adversarial[1:]
    assert torch.equal(found, (found * 255).round() / 255)
    with torch.no_grad():
        assert (model(result.adversarial[1:]).argmax(1) != labels[1:]).all()


def test_bad_bracket_is_refused():
    model, images, labels = linear_case()
    with pytest.raises(ValueError, match="lower < upper"):
        minimal_strength(model, images, labels, AttackSpec("fgsm", "linf", 0.1), lower=0,
                         upper=0.1)


def test_build_with_minimal_search_writes_minimal_rows(tmp_path, default_model):
    from advqa.data import load_samples, read_image
    from advqa.study import build_dataset, grid_from_options
    from advqa.study.build import MANIFEST_COLUMNS, SEARCH_COLUMNS

    samples = load_samples("imagenet")[:2]
    grid = grid_from_options(["fgsm"], ["linf"], [16 / 255])
    plain = build_dataset(samples, default_model, grid, tmp_path / "grid", keep_failed=True,
                          progress=False)
    assert list(plain.manifest.columns) == MANIFEST_COLUMNS  # nothing changes without it
    summary = build_dataset(samples, default_model, grid, tmp_path / "minimal",
                            keep_failed=True, progress=False, search="minimal", rounds=3)
    manifest = pd.read_parquet(tmp_path / "minimal" / "manifest.parquet")
    assert list(manifest.columns) == MANIFEST_COLUMNS + SEARCH_COLUMNS
    assert len(manifest) == 2 and (manifest.search == "minimal").all()
    assert (manifest.bisection_calls <= 3 + 1).all()
    found = manifest[manifest.success]
    assert len(found) >= 1
    assert ((found.strength >= 16 / 255 / 256) & (found.strength <= 16 / 255 + 1e-12)).all()
    for row in found.itertuples():
        adversarial = read_image(tmp_path / "minimal" / row.adversarial_path)
        with torch.no_grad():
            assert default_model(adversarial[None]).argmax(1).item() == row.adversarial_prediction
        assert row.adversarial_prediction != row.label
        assert row.linf <= row.strength + 0.5 / 255 + 1e-6
        assert json.loads(row.parameters)["upper"] == pytest.approx(16 / 255)
    table = summary.success_table()
    assert table.search.tolist() == ["minimal"] and table.tried.tolist() == [2]
    assert json.loads((tmp_path / "minimal" / "study.json").read_text())["searches"] == [
        {"search": "minimal", "rounds": 3, "lower": "upper/256", "kappa": "linear from 0",
         "budget": "threshold", "metric": "advdss"}]
    # Resumed: every unit is skipped and the same rows come back.
    again = build_dataset(samples, default_model, grid, tmp_path / "minimal",
                          keep_failed=True, progress=False, search="minimal", rounds=3)
    assert again.skipped_units == again.attempted == 1


def test_cli_search_option(tmp_path):
    from advqa.cli.main import parser

    arguments = parser().parse_args(["build", "--out", str(tmp_path), "--search", "minimal",
                                     "--rounds", "5"])
    assert (arguments.search, arguments.rounds) == ("minimal", 5)
    assert parser().parse_args(["build", "--out", str(tmp_path)]).search is None


def scored_manifest() -> pd.DataFrame:
    grid = [{"id": f"g{i}", "attack": "pgd", "norm": "linf", "strength": 0.03,
             "strength_name": "eps", "success": True, "clean_correct": True,
             "search": "grid", "bisection_calls": pd.NA, "advdss": 0.9, "l2": 1.0}
            for i in range(3)]
    minimal = [{"id": f"m{attack}{i}", "attack": attack, "norm": "linf",
                "strength": 0.001 * (i + 1), "strength_name": "eps", "success": i < 9,
                "clean_correct": True, "search": "minimal", "bisection_calls": 9,
                "advdss": value + 0.001 * i, "l2": 0.1}
               for attack, value in (("pgd", 0.99), ("fgsm", 0.95)) for i in range(10)]
    return pd.DataFrame(grid + minimal)


def test_report_ranks_the_per_image_minimal_aes():
    from advqa.report.visibility import cell_table, derive_success, minimal_visibility

    scores = scored_manifest()
    table = minimal_visibility(scores)
    assert table.attack.tolist() == ["pgd", "fgsm"]  # least visible first
    pgd = table.iloc[0]
    assert pgd.n == 9 and pgd.searched == 10  # the image not fooled is no minimal AE
    assert pgd.median_advdss == pytest.approx(0.994)
    assert pgd.low <= pgd.median_advdss <= pgd.high
    assert pgd.low >= 0.99 and pgd.high <= 0.998
    assert minimal_visibility(scores.drop(columns=["advdss"])).empty
    assert minimal_visibility(scores[scores.search == "grid"]).empty
    # The grid's ranking ignores the minimal rows: one cell, its own AEs only.
    cells = cell_table(derive_success(scores), scores)
    assert len(cells) == 1 and cells.aes.tolist() == [3]
    assert "bisection_calls" not in cells.columns


def test_the_report_shows_the_per_image_minimal_table(tmp_path, default_model):
    """A searched and scored study's report carries the per-image table beside the
    equal-success ranking, with the numbers minimal_visibility computes."""
    from advqa.data import load_samples
    from advqa.quality.scoring import score_study
    from advqa.report import render_report
    from advqa.report.visibility import minimal_visibility
    from advqa.study import build_dataset, grid_from_options
    from advqa.study.layout import StudyDir

    study = tmp_path / "study"
    grid = grid_from_options(["fgsm"], ["linf"], [16 / 255])
    build_dataset(load_samples("imagenet")[:3], default_model, grid, study, progress=False,
                  search="minimal", rounds=3)
    score_study(study, ["advdss"], progress=False)
    html = render_report(study)
    assert 'id="minimal"' in html and "Least visible AE per image" in html
    table = minimal_visibility(StudyDir(study).scored_manifest())
    assert len(table) == 1 and table.n.iloc[0] >= 1
    section = html[html.index('id="minimal"'):]
    assert f"{table.median_advdss.iloc[0]:.5f}"[:6] in section


def test_table6_and_figure7_read_only_the_grid_rows():
    """A minimal row's strength is its own: it must not become a point of Figure 7's
    curves or an AE of Table 6's cell."""
    from advqa.evaluate.applications import aeqa_by_strength, attack_comparison, best_settings

    scores = scored_manifest().assign(aeqa=0.5)
    curves = aeqa_by_strength(scores)
    assert curves[["attack", "strength"]].values.tolist() == [["pgd", 0.03]]
    assert best_settings(scores).best_strength.tolist() == [0.03]
    table = attack_comparison(scores, None, norm="linf", strength=0.001)
    assert table.empty or (table.aes == 0).all()
    assert attack_comparison(scores, None, norm="linf", strength=0.03).aes.tolist() == [3]


def test_linear_axis_tries_its_lower_end_and_lands_within_one_step():
    """κ's axis is linear from 0: the lower end is attacked (an image it fools is found at
    0), the others end within (upper - lower) / 2^rounds above their true threshold."""
    model, images, labels = linear_case()
    spec = AttackSpec("fgsm", "linf", 0.3)
    axis = SearchAxis(spec, "eps", 0.002, 0.3, "linear")  # (FGSM refuses ε = 0)
    result = minimal_strength(model, images, labels, axis, rounds=6, quantise=False)
    assert result.found.all() and result.step == pytest.approx(0.298 / 64)
    for found, true in zip(result.strength.tolist(), THRESHOLDS, strict=True):
        assert true <= found * (1 + 1e-6) and found - true <= result.step + 1e-9
    assert (result.calls <= 6 + 2).all()
    shifted = SearchAxis(spec, "eps", 0.005, 0.3, "linear")  # fools image 0 at its lower end
    first = minimal_strength(model, images, labels, shifted, rounds=6, quantise=False)
    assert first.strength[0].item() == pytest.approx(0.005) and first.calls[0] == 2


def test_kappa_zero_cell_is_searched_by_its_one_run():
    """A C&W κ = 0 cell (the demo grid's) is no longer refused: its axis is the one point
    κ = 0, run once; the strength found is 0 where its 8-bit AE fools."""
    model, images, labels = linear_case()
    spec = AttackSpec("cw", "l2", 0.0, {"steps": 30, "binary_search_steps": 2})
    axis = search_axis(spec)
    assert (axis.name, axis.scale, axis.lower, axis.upper) == ("kappa", "linear", 0.0, 0.0)
    result = minimal_strength(model, images, labels, axis, rounds=8, quantise=False)
    assert (result.calls == 1).all()
    assert result.found.any()
    assert (result.strength[result.found] == 0).all()
    with torch.no_grad():
        fooled = model(result.adversarial).argmax(1) != labels
    assert torch.equal(fooled, result.found)


def test_budget_axis_finds_the_tightest_fooling_threshold():
    """A budgeted cell searches its budget, not ε. With budget linf<=t inside an ε = 0.3
    box, FGSM's AE is retracted to L∞ = t, which flips image i exactly when t > s_i: the
    tightest fooling threshold is s_i, found within one log-bisection step (plus the
    projection's own tolerance)."""
    model, images, labels = linear_case()
    spec = AttackSpec("fgsm", "linf", 0.3, {"budget": "linf<=0.3"})
    axis = search_axis(spec)
    assert (axis.name, axis.scale) == ("budget", "log")
    assert axis.upper == pytest.approx(0.3) and axis.lower == pytest.approx(0.3 / 256)
    result = minimal_strength(model, images, labels, axis, rounds=8, quantise=False)
    assert result.found.all()
    for position, (slack, true) in enumerate(zip(result.strength.tolist(), THRESHOLDS,
                                                 strict=True)):
        threshold = axis.recorded(slack)
        assert threshold == pytest.approx(slack)  # linf's perfect score is 0
        assert true <= threshold * (1 + 1e-6)
        # The projection aims inside the budget by up to QUANTISED_TOLERANCE of its slack
        # and the 8-bit check adds up to half a level, so the AE at threshold t has
        # L∞ >= (1 - tolerance)·t - 0.5/255; it fools, so that is <= s_i·step.
        assert threshold * (1 - QUANTISED_TOLERANCE) - 0.5 / 255 <= true * result.step
        change = (result.adversarial[position] - images[position]).abs().max().item()
        assert change <= threshold + 1e-6  # the AE meets the budget found
    higher = search_axis(AttackSpec("pgd", "linf", 0.1, {"budget": "ssim>=0.95"}))
    assert higher.upper == pytest.approx(0.05)
    assert higher.recorded(0.01) == pytest.approx(0.99)
    assert "ssim>=0.99" in higher.cell(0.01).settings["budget"]


@pytest.mark.parametrize(("spec", "message"), [
    (AttackSpec("lbfgs", "l2", 10), "step"),
    (AttackSpec("fgsm", "linf", 0.0), "must be > 0"),
    (AttackSpec("deepfool", "l2", 0.0), "must be > 0"),
    (AttackSpec("pgd", "linf", 0.1, {"budget": "psnr>=30"}), "infinite"),
])
def test_cells_with_nothing_to_bisect_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        search_axis(spec)


def test_build_refuses_a_bad_ranking_metric_or_cell_before_any_work(tmp_path, default_model):
    from advqa.data import load_samples
    from advqa.study import build_dataset

    samples = load_samples("imagenet")[:1]
    grid = [AttackSpec("fgsm", "linf", 0.03)]
    with pytest.raises(ValueError, match="no-reference"):
        build_dataset(samples, default_model, grid, tmp_path / "a", search="minimal",
                      metric="brisque", progress=False)
    with pytest.raises(ValueError, match="unknown"):
        build_dataset(samples, default_model, grid, tmp_path / "b", search="minimal",
                      metric="nope", progress=False)
    with pytest.raises(ValueError, match="step"):
        build_dataset(samples, default_model, [AttackSpec("lbfgs", "l2", 10)],
                      tmp_path / "c", search="minimal", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_ranking_counts_each_image_once_and_follows_the_metric_direction():
    """Three cells of one attack searched on the same images: each image counts once, by
    its least visible AE; a lower-is-better metric ranks ascending; budgeted cells are
    their own group."""
    rows = []
    for image in range(4):
        for cell, shift in ((0.01, 0.0), (0.03, 0.002), (0.1, 0.004)):
            for attack, base in (("pgd", 0.01), ("fgsm", 0.05)):
                rows.append({"id": f"{attack}{image}{cell}", "image": f"im{image}",
                             "attack": attack, "norm": "linf", "strength": cell / 10,
                             "strength_name": "eps", "success": True, "search": "minimal",
                             "searched": "eps", "searched_value": cell / 10,
                             "parameters": json.dumps({"cell_strength": cell}),
                             "lpips": base + shift + 0.001 * image})
    rows.append({"id": "b", "image": "im0", "attack": "pgd", "norm": "linf",
                 "strength": 0.03, "strength_name": "eps", "success": True,
                 "search": "minimal", "searched": "budget", "searched_value": 0.999,
                 "parameters": json.dumps({"cell_strength": 0.03,
                                           "cell_budget": "advdss>=0.99"}),
                 "lpips": 0.001})
    from advqa.report.visibility import minimal_visibility

    table = minimal_visibility(pd.DataFrame(rows), "lpips")
    assert table[["attack", "budget"]].values.tolist() == [
        ["pgd", "advdss>=0.99"], ["pgd", ""], ["fgsm", ""]]  # lower lpips first
    plain = table.iloc[1]
    assert plain.n == 4 and plain.searched == 4  # four images, not twelve rows
    assert plain.median_lpips == pytest.approx(0.0115)  # per image the smallest lpips
    assert table.iloc[0].strength_name == "budget"
    assert table.iloc[0].median_strength == pytest.approx(0.999)
    # Images searched but not fooled have no row without --keep-failed: the build's
    # success table says how many were searched.
    success = pd.DataFrame([{"search": "minimal", "attack": "pgd", "norm": "linf",
                             "strength": 0.03, "correct": 6}])
    counted = minimal_visibility(pd.DataFrame(rows), "lpips", success)
    assert counted[counted.attack == "pgd"].searched.tolist() == [6, 6]
    assert counted[counted.attack == "fgsm"].searched.tolist() == [4]


def test_build_searches_kappa_and_budget_cells_and_ranks_by_the_chosen_metric(
        tmp_path, default_model):
    """The demo grid's C&W κ = 0 cell and a budgeted PGD cell in one searched build: every
    budget AE meets the threshold it records (scored independently after the build), and
    the report ranks by ``metric`` from study.json."""
    from advqa.data import load_samples
    from advqa.quality.scoring import score_study
    from advqa.report import render_report
    from advqa.study import build_dataset
    from advqa.study.layout import StudyDir

    study = tmp_path / "study"
    grid = [AttackSpec("cw", "l2", 0.0, {"steps": 20, "binary_search_steps": 1}),
            AttackSpec("pgd", "linf", 16 / 255, {"steps": 5, "budget": "advdss>=0.99"})]
    build_dataset(load_samples("imagenet")[:2], default_model, grid, study, progress=False,
                  search="minimal", rounds=2, metric="ssim", keep_failed=True)
    assert json.loads((study / "study.json").read_text())["searches"][-1]["metric"] == "ssim"
    score_study(study, ["advdss", "ssim"], progress=False)
    scored = StudyDir(study).scored_manifest()
    cw = scored[scored.attack == "cw"]
    assert (cw.searched == "kappa").all() and (cw.bisection_calls <= 1).all()
    assert (cw[cw.success].searched_value == 0).all()
    pgd = scored[scored.attack == "pgd"]
    assert (pgd.searched == "budget").all()
    assert ((pgd.strength - 16 / 255).abs() < 1e-12).all()  # ε stays the outer box
    fooled = pgd[pgd.success]
    assert len(fooled) >= 1
    assert (fooled.searched_value >= 0.99).all()
    assert (fooled.advdss >= fooled.searched_value - 1e-6).all()  # the budget holds
    for row in fooled.itertuples():
        parameters = json.loads(row.parameters)
        assert parameters["cell_budget"] == "advdss>=0.99"
        assert parameters["budget"] == f"advdss>={row.searched_value!r}"
    html = render_report(study)
    section = html[html.index('id="minimal"'):]
    assert "median SSIM" in section or "median ssim" in section.lower()
    assert "advdss&gt;=0.99" in section
