"""Scoring studies: columns per metric, resumption, failures recorded, CLI."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from advqa.cli.main import main
from advqa.data import load_samples, read_image, save_png
from advqa.quality import MetricInfo, get_metric, registry, scoring
from advqa.study import build_dataset, grid_from_options


@pytest.fixture(scope="module")
def study(tmp_path_factory, default_model):
    output = tmp_path_factory.mktemp("scored")
    grid = grid_from_options(["fgsm"], ["linf"], [2 / 255, 8 / 255])
    build_dataset(load_samples("imagenet")[:3], default_model, grid, output, progress=False,
                  keep_failed=True)
    return output


def test_scores_are_columns_matching_direct_calls(study, default_model):
    wide = scoring.score_study(study, ["psnr", "advdss", "aeqa", "l2"], model=default_model,
                               batch_size=4, progress=False)
    manifest = pd.read_parquet(study / "scored_manifest.parquet")
    assert {"psnr", "advdss", "aeqa", "l2"} <= set(manifest.columns)
    assert len(wide) == len(manifest) == 6
    row = manifest.iloc[0]
    reference = read_image(study / row.reference_path)[None]
    adversarial = read_image(study / row.adversarial_path)[None]
    assert row.advdss == pytest.approx(get_metric("advdss")(adversarial, reference).item(),
                                       rel=1e-6)
    assert row.psnr == pytest.approx(get_metric("psnr")(adversarial, reference).item(),
                                     rel=1e-6)
    assert row.l2 == pytest.approx(pd.read_parquet(study / "manifest.parquet").l2.iloc[0],
                                   rel=1e-6)


def test_rescoring_resumes_without_recomputing(study, monkeypatch):
    scoring.score_study(study, ["psnr"], progress=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("finished scores were recomputed")

    monkeypatch.setattr(scoring, "score_batch", forbidden)
    wide = scoring.score_study(study, ["psnr"], progress=False)
    assert wide.psnr.notna().all()


def explodes(reference, distorted):
    """A metric that cannot score bright images."""
    if distorted.mean() > 0:
        raise RuntimeError("cannot score this")
    return torch.zeros(distorted.shape[0])


def test_a_failing_metric_is_recorded_and_the_run_goes_on(study, monkeypatch):
    info = MetricInfo("explodes", True, True, (0, 1), False, "test")
    monkeypatch.setitem(registry._ENTRIES, "explodes", (info, f"{__name__}:explodes"))
    with pytest.warns(UserWarning, match="cannot score this"):
        wide = scoring.score_study(study, ["explodes", "psnr"], progress=False)
    assert wide.explodes.isna().all() and wide.psnr.notna().all()
    failures = pd.read_csv(study / "score_failures.csv")
    assert (failures.metric == "explodes").all() and failures.error.str.contains("cannot").all()


def test_score_command_on_a_pair(tmp_path, capsys):
    image = load_samples("photos")[0].image[:, :64, :64]
    save_png(image, tmp_path / "reference.png")
    save_png((image * 0.9).clamp(0, 1), tmp_path / "distorted.png")
    code = main(["score", str(tmp_path / "reference.png"), str(tmp_path / "distorted.png"),
                 "--metrics", "psnr,advdss"])
    output = capsys.readouterr().out
    assert code == 0 and "psnr" in output and "advdss" in output
    assert main(["score", str(tmp_path / "reference.png"), str(tmp_path / "distorted.png"),
                 "--metrics", "ssmi"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_metrics_command_lists_the_registry(capsys):
    assert main(["metrics"]) == 0
    output = capsys.readouterr().out
    assert "advdss" in output and "niqe" in output and "needs --model" in output


def test_cached_logits_run_each_image_once_and_match_the_model(tiny_model):
    calls = []

    class Counting(torch.nn.Module):
        def forward(self, images):
            calls.append(len(images))
            return tiny_model(images)

    cached = scoring.CachedLogits(Counting(), capacity=3)
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = tiny_model(images)
        first = cached(images[:2])
        again = cached(images[[1, 0, 2]])  # two known, one new
    torch.testing.assert_close(first, expected[:2])
    torch.testing.assert_close(again, expected[[1, 0, 2]])
    assert calls == [1, 1, 1]  # each image once, and alone
    assert len(cached.logits) == 3  # capacity holds
    gradient_input = images[:1].clone().requires_grad_(True)
    assert cached(gradient_input).requires_grad  # gradients bypass the cache


def test_score_on_dask_gives_the_local_table(study, default_model, tmp_path):
    """Scoring on a 2-worker Dask cluster on 127.0.0.1 gives the local table: exactly when
    this process also runs one torch thread (each worker runs one); the workers get the
    files' bytes and load the classifier by name."""
    import shutil
    import sqlite3

    from advqa.jobs import DaskExecutor, LocalExecutor, clear_worker_cache

    clear_worker_cache()  # logits cached here by earlier tests came from 2 torch threads
    tables = {}
    for name, executor in (("local", LocalExecutor(threads=1)),
                           ("dask", DaskExecutor(workers=2))):
        copy = tmp_path / name
        shutil.copytree(study, copy)
        with sqlite3.connect(copy / "ledger.sqlite") as connection:  # score from scratch
            connection.execute("DELETE FROM job_rows WHERE job = 'score'")
        with executor:
            tables[name] = scoring.score_study(copy, ["psnr", "ssim", "advdss", "aeqa", "js",
                                                      "niqe", "l2"], model=default_model,
                                               batch_size=4, executor=executor,
                                               progress=False)
    pd.testing.assert_frame_equal(tables["dask"], tables["local"], check_exact=True)
    assert tables["local"].drop(columns="id").notna().all().all()
