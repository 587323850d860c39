"""Perceptual budgets (``budget="advdss>=0.99"``) and the Lagrangian attack (ALMA, any metric)."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advqa.attacks import BudgetError, MetricBudget, distances, get_attack
from advqa.attacks.perceptual import TOLERANCE, budget_metrics
from advqa.data import quantize
from advqa.quality import get_metric
from advqa.quality.registry import is_available
from advqa.study.grid import AttackSpec, load_grid

GRADIENT_ATTACKS = ["pgd", "bim", "mim", "fgsm"]
# The metric, and the span of thresholds tried: tight enough to bind on 16×16 noise.
METRICS = {"advdss": (0.95, 0.999), "ssim": (0.85, 0.99)}


@pytest.fixture(scope="module")
def grid_batch(tiny_model):
    """Six 16×16 images on the 8-bit grid, labelled with the tiny model's answers."""
    generator = torch.Generator().manual_seed(3)
    images = quantize(torch.rand(6, 3, 16, 16, generator=generator))
    with torch.no_grad():
        return images, tiny_model(images).argmax(1)


@pytest.fixture(scope="module")
def scorers():
    return {name: get_metric(name) for name in METRICS}


def score(metric, images, clean):
    with torch.no_grad():
        return metric(images, clean)


@pytest.mark.parametrize("metric", list(METRICS))
@pytest.mark.parametrize("name", GRADIENT_ATTACKS)
@settings(max_examples=4, deadline=None)
@given(fraction=st.floats(0, 1), eps=st.sampled_from([16 / 255, 64 / 255]),
       seed=st.integers(0, 2**16))
def test_every_ae_meets_its_budget_after_quantisation(tiny_model, grid_batch, scorers, name,
                                                      metric, fraction, eps, seed):
    images, labels = grid_batch
    low, high = METRICS[metric]
    threshold = round(low + fraction * (high - low), 4)
    options = {"steps": 5} if name != "fgsm" else {}
    attack = get_attack(name, eps=eps, seed=seed, budget=f"{metric}>={threshold}", **options)
    adversarial = attack(tiny_model, images, labels)
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert (distances(images, adversarial)["linf"] <= eps + 1e-6).all()
    # Checked with the scorer a user would call, on the image that gets saved.
    assert (score(scorers[metric], quantize(adversarial), images) >= threshold).all()
    assert (score(scorers[metric], adversarial, images) >= threshold).all()


def test_the_budget_binds_where_it_is_tested(tiny_model, grid_batch, scorers):
    """Without a budget the same attacks leave the thresholds above: the test above bites."""
    images, labels = grid_batch
    for metric, (_, high) in METRICS.items():
        for name in GRADIENT_ATTACKS:
            adversarial = get_attack(name, eps=16 / 255)(tiny_model, images, labels)
            assert (score(scorers[metric], quantize(adversarial), images) < high).all()


def test_the_projection_spends_the_budget_along_the_perturbation(grid_batch, scorers):
    images, _ = grid_batch
    generator = torch.Generator().manual_seed(5)
    candidates = (images + 0.2 * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    budget = MetricBudget.parse("advdss>=0.97")
    projected = budget.project(candidates, images)
    values = score(scorers["advdss"], projected, images)
    assert (values >= 0.97).all()
    # Close to the threshold: at most the tolerance of the allowance 1 − 0.97 unspent.
    assert (values <= 0.97 + TOLERANCE * 0.03 + 1e-6).all()
    # On the segment from the clean image to the candidate: one factor t ∈ [0, 1] per image.
    delta, step = candidates - images, projected - images
    t = (step * delta).flatten(1).sum(1) / delta.flatten(1).square().sum(1)
    assert ((t > 0) & (t < 1)).all()
    torch.testing.assert_close(step, t.view(-1, 1, 1, 1) * delta, atol=1e-6, rtol=0)


def test_candidates_within_budget_are_left_alone(grid_batch):
    images, _ = grid_batch
    nudged = quantize((images + 1 / 255).clamp(0, 1))
    budget = MetricBudget.parse("advdss>=0.5")
    assert torch.equal(budget.project(nudged, images), nudged)
    assert torch.equal(budget.finalise(nudged, images), nudged)


@pytest.mark.parametrize("name", ["pgd", "mim"])
def test_a_tighter_budget_never_gives_a_more_visible_ae(tiny_model, grid_batch, scorers, name):
    images, labels = grid_batch
    thresholds = [0.95, 0.97, 0.98, 0.99, 0.995, 0.999]
    values = torch.stack([
        score(scorers["advdss"], quantize(get_attack(
            name, eps=64 / 255, steps=10, seed=1, budget=f"advdss>={threshold}")(
                tiny_model, images, labels)), images)
        for threshold in thresholds])
    assert (values[1:] >= values[:-1]).all(), values


def test_budgets_hold_on_photos_with_the_default_model(default_model, imagenet_batch):
    images, labels = imagenet_batch[0][:3], imagenet_batch[1][:3]
    advdss = get_metric("advdss")
    found = []
    for threshold in (0.995, 0.999):
        result = get_attack("pgd", eps=16 / 255, steps=5, seed=0,
                            budget=f"advdss>={threshold}").run(default_model, images, labels)
        saved = quantize(result.images)
        values = score(advdss, saved, images)
        assert (values >= threshold).all()
        found.append(values)
    assert (found[1] >= found[0]).all()


@pytest.mark.parametrize(("text", "message"), [
    ("advds>=0.99", "unknown metric 'advds'"),
    ("niqe<=5", "no-reference"),
    ("aeqa>=0.5", "needs a classifier"),
    ("l0<=10", "not differentiable"),
    ("advdss<=0.99", "higher-is-better, so its budget is advdss>="),
    ("gmsd>=0.1", "lower-is-better, so its budget is gmsd<="),
    ("advdss>=1.5", "outside advdss's range"),
    ("ssim>=-0.1", "outside ssim's range"),
    ("advdss>0.99", "cannot read budget"),
    ("advdss>=high", "not a number"),
    ("advdss>=nan", "finite number"),
    ("", "cannot read budget"),
])
def test_bad_budgets_are_explained(text, message):
    with pytest.raises(BudgetError, match=message):
        MetricBudget.parse(text)
    with pytest.raises(ValueError, match=message):
        get_attack("pgd", budget=text)


def test_budget_needs_a_string():
    with pytest.raises(BudgetError, match="a budget is a string"):
        get_attack("pgd", budget=0.99)


def test_a_metric_without_its_weights_is_refused_up_front():
    if is_available("lpips"):
        assert str(MetricBudget.parse("lpips <= 0.05")) == "lpips<=0.05"
    else:
        with pytest.raises(BudgetError, match="cannot run on this machine"):
            MetricBudget.parse("lpips<=0.05")


@pytest.mark.parametrize(("text", "message"), [
    ("ssim>=1", "only an image identical"),
    ("ssim>=0", "constrains nothing"),
    ("advdss>=0.3", "worse half"),
    ("gmsd<=0.3", "worse half"),
])
def test_suspicious_budgets_warn(text, message):
    with pytest.warns(UserWarning, match=message):
        MetricBudget.parse(text)


def test_sensible_budgets_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for text in ("advdss>=0.99", "ssim >= 0.95", "gmsd<=0.05", "psnr>=40", "vif>=0.9"):
            MetricBudget.parse(text)


def test_only_gradient_attacks_take_a_budget():
    for name in ("deepfool", "cw", "lbfgs", "alma"):
        with pytest.raises(ValueError, match="does not take a perceptual budget"):
            get_attack(name, budget="advdss>=0.99")
    assert "advdss" in budget_metrics() and "niqe" not in budget_metrics()


def test_parameters_and_cell_keys_record_the_budget(tmp_path):
    for name in [*GRADIENT_ATTACKS, "korhonen"]:
        attack = get_attack(name, budget="advdss >= 0.990")
        assert attack.parameters()["budget"] == "advdss>=0.99"
        assert "budget" not in get_attack(name).parameters()
    plain = AttackSpec("pgd", "linf", 0.03, {"steps": 10})
    budgeted = AttackSpec("pgd", "linf", 0.03, {"steps": 10, "budget": "advdss>=0.99"})
    assert plain.key() != budgeted.key()
    assert budgeted.describe()["budget"] == "advdss>=0.99"
    grid = tmp_path / "grid.toml"
    grid.write_text('[[attack]]\nname = "pgd"\neps = [0.03]\nsteps = 10\n'
                    'budget = "advdss>=0.99"\n')
    assert load_grid(grid) == [budgeted]
    clone = pickle.loads(pickle.dumps(get_attack("pgd", budget="ssim>=0.9")))
    assert clone.parameters()["budget"] == "ssim>=0.9"


def test_alma_fools_with_8_bit_aes_and_keeps_the_others(tiny_model, grid_batch, scorers):
    images, labels = grid_batch
    result = get_attack("alma", metric="ssim", steps=30).run(tiny_model, images, labels)
    assert result.success.sum() >= 4
    assert torch.equal(quantize(result.images), result.images)
    assert torch.equal(result.images[~result.success], images[~result.success])
    with torch.no_grad():
        assert (tiny_model(result.images[result.success]).argmax(1)
                != labels[result.success]).all()
    assert (result.steps[result.success] >= 1).all() and (result.steps <= 30).all()


def test_alma_refuses_metrics_it_cannot_minimise():
    with pytest.raises(ValueError, match="no finite best value"):
        get_attack("alma", metric="psnr")
    with pytest.raises(BudgetError, match="no-reference"):
        get_attack("alma", metric="niqe")
    with pytest.raises(ValueError, match="out-of-range steps"):
        get_attack("alma", steps=0)
    assert get_attack("lagrangian").parameters()["metric"] == "advdss"


def test_advqa_attack_takes_a_budget(tmp_path, capsys):
    import pandas as pd

    from advqa.cli.main import main
    from advqa.data import load_samples, read_image, save_png

    folder = tmp_path / "in"
    folder.mkdir()
    for sample in load_samples("imagenet")[:2]:
        save_png(sample.image, folder / f"{sample.name}.png")
    output = tmp_path / "out"
    code = main(["attack", str(folder), str(output), "--attack", "pgd", "--eps", "16/255",
                 "--steps", "3", "--budget", "advdss>=0.995", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    advdss = get_metric("advdss")
    for row in pd.read_parquet(output / "results.parquet").itertuples():
        saved = read_image(output / f"{row.image}.png")[None]
        reference = read_image(output / "references" / f"{row.image}.png")[None]
        assert score(advdss, saved, reference).item() >= 0.995
    code = main(["attack", str(folder), str(tmp_path / "bad"), "--budget", "advdss<=0.99"])
    assert code == 2
    assert "higher-is-better, so its budget is advdss>=" in capsys.readouterr().err


def test_build_grids_take_a_budget(tmp_path):
    from advqa.study.grid import GridError, choose_grid

    grid = choose_grid(attacks=["pgd", "fgsm"], norms=["linf"], strengths=[0.03],
                       budget="ssim>=0.95")
    assert {spec.settings["budget"] for spec in grid} == {"ssim>=0.95"}
    assert grid[0].label() == "pgd-linf-eps0.03-ssim-ge0.95"
    with pytest.warns(UserWarning, match="cw, deepfool take no perceptual budget"):
        demo = choose_grid(named="demo", budget="advdss>=0.99")
    assert {spec.attack for spec in demo} == {"pgd", "fgsm", "bim", "mim"}
    assert len({spec.key() for spec in demo}) == len(demo)
    with pytest.raises(GridError, match="no attack of the grid takes a perceptual budget"):
        choose_grid(attacks=["deepfool"], norms=["l2"], strengths=[0.02], budget="ssim>=0.9")
    with pytest.raises(GridError, match="--budget: unknown metric"):
        choose_grid(attacks=["pgd"], strengths=[0.03], budget="ssimm>=0.9")
    config = tmp_path / "grid.toml"
    config.write_text('[[attack]]\nname = "pgd"\neps = [0.03]\n')
    with pytest.raises(GridError, match="write budget = "):
        choose_grid(config=config, budget="ssim>=0.9")
    config.write_text('[[attack]]\nname = "alma"\nsteps = [10]\n')
    with pytest.raises(GridError, match="alma has no norm"):
        choose_grid(config=config)
    config.write_text('[[attack]]\nname = "deepfool"\novershoot = [0.02]\n'
                      'budget = "ssim>=0.9"\n')
    with pytest.raises(GridError, match="unknown key"):
        choose_grid(config=config)


def test_the_docs_example_runs_and_keeps_its_budget(capsys):
    """docs/perceptual-budgets.md's first Python block, run as written."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "perceptual-budgets.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, "perceptual-budgets.md", "exec"), {})
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.strip().splitlines()
    scores = [float(value) for value in lines[-1].strip("[]").split(",")]
    assert len(scores) == 4 and min(scores) >= 0.99
