"""Fool_EV (evolved fooling images), the Table II/III helpers and the Figure 4 t-SNE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advqa.detect.fooling_ev import evolve_fooling_images, polynomial_mutation
from advqa.detect.group_stats import confidence_table, quality_table
from advqa.detect.tsne import default_perplexity, tsne_figure

TARGETS = [1, 407, 949]   # goldfish, ambulance, strawberry


@pytest.fixture(scope="module")
def evolved(default_model):
    return evolve_fooling_images(default_model, TARGETS, generations=8, population=16,
                                 image_size=64, seed=3, batch_size=16, view="native")


def test_fool_ev_raises_target_confidence_on_the_victim(evolved):
    images, history = evolved
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, (images * 255).round() / 255)   # on the 8-bit grid
    assert history.shape == (9, 3)
    assert np.all(np.diff(history, axis=0) >= 0)                # elitism
    assert np.all(history[-1] > history[0])                     # every target improved
    assert history[-1].mean() > 1.5 * history[0].mean()


def test_fool_ev_history_is_the_confidence_of_the_returned_images(default_model, evolved):
    images, history = evolved
    with torch.no_grad():
        probabilities = torch.softmax(default_model(images), dim=1)
    confidence = probabilities[torch.arange(3), torch.tensor(TARGETS)].double().numpy()
    np.testing.assert_allclose(confidence, history[-1], rtol=1e-4, atol=1e-7)


def test_fool_ev_is_reproducible_and_seed_dependent(default_model, evolved):
    again = evolve_fooling_images(default_model, TARGETS, generations=8, population=16,
                                  image_size=64, seed=3, batch_size=8, view="native")
    assert torch.equal(again.images, evolved.images)
    np.testing.assert_allclose(again.history, evolved.history, rtol=1e-5)
    other = evolve_fooling_images(default_model, TARGETS, generations=1, population=4,
                                  image_size=64, seed=4, view="native")
    assert not torch.equal(other.images, evolved.images)


def test_fool_ev_model_view_goes_through_the_gate_resize(default_model, tiny_model):
    messages = []
    result = evolve_fooling_images(default_model, [1], generations=1, population=2,
                                   image_size=32, seed=0, progress=messages.append)
    assert result.images.shape == (1, 3, 32, 32) and result.history.shape == (2, 1)
    assert len(messages) == 1 and "generation 1/1" in messages[0]
    # a model without .info (no resize) and 10 classes
    small = evolve_fooling_images(tiny_model, [0, 9], generations=3, population=8,
                                  image_size=16, seed=1)
    assert small.images.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("options, message", [
    ({"generations": 0}, "generations"), ({"generations": 2.5}, "generations"),
    ({"population": 0}, "population"), ({"population": True}, "population"),
    ({"image_size": 4}, "image_size"), ({"mutation_rate": 0}, "mutation_rate"),
    ({"strength": -1}, "strength"), ({"view": "crop"}, "view"),
    ({"targets": []}, "targets"), ({"targets": [3, 3]}, "unique"),
    ({"targets": [10]}, r"\[0, 10\)"), ({"targets": [0.5]}, "targets"),
])
def test_fool_ev_validates_its_arguments(tiny_model, options, message):
    arguments = {"targets": [0], "generations": 1, "population": 2, "image_size": 16, **options}
    with pytest.raises(ValueError, match=message):
        evolve_fooling_images(tiny_model, arguments.pop("targets"), **arguments)


def test_polynomial_mutation_matches_debs_formula():
    values = torch.tensor([0.5, 0.5, 0.5, 0.98])
    uniform = torch.tensor([0.25, 0.75, 0.5, 0.999])
    chosen = torch.tensor([True, True, False, True])
    mutated = polynomial_mutation(values, chosen, uniform, 15.0)
    expected = [0.5 + 0.5 ** (1 / 16) - 1, 0.5 + 1 - 0.5 ** (1 / 16), 0.5, 1.0]
    np.testing.assert_allclose(mutated.numpy(), expected, rtol=1e-6)


def test_quality_table_matches_a_hand_computation():
    table = quality_table({"gd": [0.2, 0.3], "clean": [0.4, 0.5, 0.9], "ev": [0.1]})
    assert list(table.index) == ["None", "Evolutionary Algorithm", "Gradient Ascent Method"]
    assert table.attrs["groups"] == ["clean", "ev", "gd"]
    assert list(table.columns) == ["Number of images", "Median", "Mean", "Std."]
    assert table.index.name == "Adversarial method" and table.columns.name == "Predicted MOS"
    clean = table.loc["None"]
    assert clean["Number of images"] == 3
    assert clean["Median"] == pytest.approx(0.5)
    assert clean["Mean"] == pytest.approx(0.6)
    # sample std: sqrt(((-.2)^2 + (-.1)^2 + .3^2) / 2) = sqrt(0.07)
    assert clean["Std."] == pytest.approx(np.sqrt(0.07))
    gd = table.loc["Gradient Ascent Method"]
    assert (gd["Median"], gd["Mean"], gd["Std."]) == pytest.approx((0.25, 0.25, np.sqrt(0.005)))
    assert np.isnan(table.loc["Evolutionary Algorithm", "Std."])


def test_confidence_table_follows_table_iii():
    table = confidence_table({"clean": [0.9, 0.8, 1.0, 0.5], "uap": [0.2, 0.4],
                              "ev": [0.6, 0.6]})
    assert list(table.index) == ["Evolutionary Algorithm", "Universal Perturbation",
                                 "Original images"]
    assert list(table.columns) == ["Median", "Mean", "Std."]
    assert table.loc["Original images"].tolist() == pytest.approx(
        [0.85, 0.8, np.std([0.9, 0.8, 1.0, 0.5], ddof=1)])
    assert table.loc["Evolutionary Algorithm", "Std."] == 0


@pytest.mark.parametrize("groups, message", [
    ({"fgsm": [0.1]}, "unknown"), ({}, "no groups"), ({"clean": []}, "no"),
    ({"clean": [1.2]}, r"\[0, 1\]"), ({"uap": [np.nan]}, "finite"),
])
def test_group_tables_validate(groups, message):
    with pytest.raises(ValueError, match=message):
        quality_table(groups)


def test_tsne_figure_writes_a_png_of_the_house_size(tmp_path):
    from PIL import Image

    from advqa.detect.tsne import HEIGHT, WIDTH
    from advqa.plotting import DPI

    generator = np.random.default_rng(0)
    features = np.vstack([generator.uniform(0, 1, (12, 6)), generator.uniform(0, 0.2, (8, 6))])
    groups = ["clean"] * 12 + ["ev"] * 8
    path = tsne_figure(features, groups, tmp_path / "tsne.png", seed=0)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (round(WIDTH * DPI), round(HEIGHT * DPI))
    again = tsne_figure(features, groups, tmp_path / "again.png", seed=0)
    assert again.read_bytes() == path.read_bytes()


def test_tsne_figure_refuses_bad_input(tmp_path):
    features = np.random.default_rng(1).uniform(size=(10, 6))
    with pytest.raises(ValueError, match="9 entries but features has 10 rows"):
        tsne_figure(features, ["clean"] * 9, tmp_path / "x.png", seed=0)
    with pytest.raises(ValueError, match=r"shape \(n, 6\)"):
        tsne_figure(features[:, :5], ["clean"] * 10, tmp_path / "x.png", seed=0)
    with pytest.raises(ValueError, match="at least 4"):
        tsne_figure(features[:3], ["clean"] * 3, tmp_path / "x.png", seed=0)
    with pytest.raises(ValueError, match="perplexity"):
        tsne_figure(features, ["clean"] * 10, tmp_path / "x.png", seed=0, perplexity=5)
    assert default_perplexity(10) == 3 and default_perplexity(1000) == 30
    assert not (tmp_path / "x.png").exists()


def test_fool_ev_genomes_take_the_channels_of_a_grey_victim():
    """A one-channel victim (fashion-mnist-cnn, 1×28×28) gets (N, 1, H, W) genomes; the
    gate's Fool_EV evolves them at the victim's 28² rather than the default 64²."""
    from advqa.detect.groups import evolved_fooling_images
    from advqa.models import load_classifier

    grey = load_classifier("fashion-mnist-cnn", device="cpu")
    native = evolve_fooling_images(grey, [0, 3, 9], generations=2, population=6,
                                   image_size=28, seed=0, view="native")
    assert native.images.shape == (3, 1, 28, 28) and native.history.shape == (3, 3)
    with torch.no_grad():
        probabilities = torch.softmax(grey(native.images), dim=1)
    np.testing.assert_allclose(probabilities[torch.arange(3), torch.tensor([0, 3, 9])],
                               native.history[-1], rtol=1e-4, atol=1e-7)
    through_gate = evolve_fooling_images(grey, [1], generations=1, population=2,
                                         image_size=40, seed=0)   # resized 40 → 28
    assert through_gate.images.shape == (1, 1, 40, 40)
    images, targets, _ = evolved_fooling_images(grey, 2, generations=1, population=4,
                                                image_size=64, seed=0)
    assert images.shape == (2, 1, 28, 28) and len(set(targets.tolist())) == 2
    forced = evolve_fooling_images(grey, [1], generations=1, population=2, image_size=28,
                                   seed=0, channels=3)   # RGB genome, made grey by prepare
    assert forced.images.shape == (1, 3, 28, 28)
    with pytest.raises(ValueError, match="channels"):
        evolve_fooling_images(grey, [1], generations=1, population=2, image_size=28,
                              channels=2)
