"""Table I / Fig. 3 of the robust-classification paper: similarity of predictions vs quality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from advqa.detect.semantic import wup_similarity
from advqa.detect.semantic_impact import (
    COLUMNS,
    impact_table,
    kde_grid,
    prediction_similarity,
    semantic_impact,
)


def test_prediction_similarity_is_wu_palmer_per_pair():
    # warplane (895) vs airliner (404): the paper's Appendix A example, 0.88.
    values = prediction_similarity([895, 404, 0], [404, 404, 0])
    assert values[0] == pytest.approx(wup_similarity(895, 404)) == pytest.approx(0.88, abs=5e-3)
    assert values[1] == wup_similarity(404, 404)
    with pytest.raises(ValueError, match="3 reference classes but 2"):
        prediction_similarity([1, 2, 3], [1, 2])


def test_impact_table_matches_a_hand_computation():
    rows = pd.DataFrame({
        "dataset": ["a"] * 4 + ["b"] * 2, "model": "m",
        "quality": [0.1, 0.2, 0.3, 0.8, 0.5, 0.7],
        "similarity": [1.0, 0.5, 1.0, 0.2, 0.9, 0.9],
        "reference_class": [1, 1, 2, 3, 4, 4], "distorted_class": [1, 2, 2, 4, 4, 4]})
    table = impact_table(rows).set_index(["dataset", "measure"])
    a = table.loc[("a", "similarity")]
    assert a["n"] == 4 and a["median"] == 0.75 and a["mean"] == pytest.approx(0.675)
    assert a["std"] == pytest.approx(np.std([1.0, 0.5, 1.0, 0.2], ddof=1))
    assert a["unchanged"] == 0.5
    assert table.loc[("b", "quality"), "median"] == pytest.approx(0.6)
    assert table.loc[("b", "similarity"), "unchanged"] == 1.0


def test_semantic_impact_on_the_victim(default_model, imagenet_batch, tmp_path):
    images = imagenet_batch[0][:3]
    rows = semantic_impact(default_model, images, names=["a", "b", "c"],
                           distortions=("blur", "noise"), levels=(1, 5), quality="piqe")
    assert list(rows.columns) == list(COLUMNS) and len(rows) == 3 * 2 * 2
    assert rows["similarity"].between(0, 1).all() and rows["quality"].between(0, 1).all()
    expected = [wup_similarity(int(a), int(b))
                for a, b in zip(rows.reference_class, rows.distorted_class, strict=True)]
    assert rows["similarity"].tolist() == expected
    # Heavier blur lowers the predicted quality on average (PIQE: lower raw is better).
    blur = rows[rows.distortion == "blur"].groupby("level")["quality"].mean()
    assert blur[5] < blur[1]
    path = kde_grid(rows, tmp_path / "fig3.png", columns=2)
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size[0] > picture.size[1] > 100
    with pytest.raises(ValueError, match="full-reference"):
        semantic_impact(default_model, images, quality="ssim")
    with pytest.raises(ValueError, match="unknown distortion"):
        semantic_impact(default_model, images, distortions=("fog",))


def test_semantic_impact_command_writes_table_i_and_figure_3_and_resumes(tmp_path, capsys):
    from advqa.cli.main import main
    from advqa.jobs import Ledger

    out = tmp_path / "impact"
    arguments = ["detect", "semantic-impact", "--limit", "2", "--distortions", "blur",
                 "--quality", "piqe", "--out", str(out), "--no-progress"]
    assert main(arguments) == 0
    assert "similarity" in capsys.readouterr().out
    rows = pd.read_csv(out / "rows.csv")
    assert len(rows) == 2 * 5 and set(rows.level) == {1, 2, 3, 4, 5}
    assert set(rows.dataset) == {"imagenet"} and set(rows.model) == {"efficientnet-lite0"}
    table = pd.read_csv(out / "table_i.csv")
    assert list(table.measure) == ["quality", "similarity"]
    assert (out / "fig3.png").stat().st_size > 0
    with Ledger(out / "ledger.sqlite", "semantic-impact") as ledger:
        assert len(ledger.finished()) == 5
    # A resume does no work again and gives the same rows; other settings are refused.
    assert main(arguments) == 0
    assert pd.read_csv(out / "rows.csv").equals(rows)
    capsys.readouterr()
    assert main([*arguments[:-1], "--seed", "1", "--no-progress"]) != 0
    assert "other settings" in capsys.readouterr().err
