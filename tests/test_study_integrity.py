"""What is on disk is what the tables say: AE identity, grid files, resumes, locks, scores.

Each test here failed on advqa before issue 11: stale scores after a rebuild, AEs lost
to id collisions, mislabelled norms, silently dropped norms, tracebacks on malformed
grid files, coerced counts, merged grids, missing PNGs, concurrent writers, labels
outside the model, failed scores never retried, and batch-dependent logits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from advqa.cli.main import main
from advqa.data import load_samples, read_image, save_png
from advqa.quality import get_metric, scoring
from advqa.study import build_dataset, grid_from_options, load_grid
from advqa.study.grid import AttackSpec, GridError, options_grid
from advqa.study.store import StudyLock, StudyLockedError

README = Path(__file__).resolve().parents[1] / "README.md"


def pgd(steps: int) -> list[AttackSpec]:
    return grid_from_options(["pgd"], ["linf"], [0.01], steps=steps)


@pytest.fixture(scope="module")
def two_photos():
    return load_samples("imagenet")[:2]


def build(samples, model, grid, output, **options):
    return build_dataset(samples, model, grid, output, progress=False, keep_failed=True,
                         **options)


# --- identity -----------------------------------------------------------------------------

def test_cells_that_differ_only_in_steps_keep_both_aes(two_photos, default_model, tmp_path):
    summary = build(two_photos, default_model, pgd(2) + pgd(6), tmp_path)
    manifest = summary.manifest
    assert len(manifest) == 4 and manifest.id.is_unique
    assert len(set(manifest.adversarial_path)) == 4
    assert sorted(json.loads(p)["steps"] for p in manifest.parameters) == [2, 2, 6, 6]
    for row in manifest.itertuples():  # each row describes its own file
        delta = read_image(tmp_path / row.adversarial_path) - read_image(
            tmp_path / row.reference_path)
        assert row.l2 == pytest.approx(delta.norm().item(), rel=1e-5)


def test_a_real_duplicate_cell_is_refused_with_both_lines(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('[[attack]]\nname = "pgd"\neps = [0.03]\n\n'
                    '[[attack]]\nname = "fgsm"\neps = [0.01]\n\n'
                    '[[attack]]\nname = "pgd"\nnorms = ["linf"]\neps = [0.03]\nsteps = 10\n')
    with pytest.raises(GridError, match=r"holds pgd-linf-eps0.03 twice \(attack entry 1, "
                       r"line 1 and attack entry 3, line 9\)"):
        load_grid(grid)
    with pytest.raises(GridError, match="more than once"):
        options_grid(["pgd"], ["linf"], [0.03, 0.03])
    with pytest.raises(GridError, match="twice"):
        options_grid(["pgd", "pgd"], ["linf"], [0.03])


def test_singular_norm_is_refused_not_mislabelled(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('[[attack]]\nname = "pgd"\nnorm = "l2"\neps = [0.5]\n')
    with pytest.raises(GridError, match=r"unknown key\(s\) norm .*valid keys: name, norms, "
                       r"eps, .*steps.*norms = \["):
        load_grid(grid)
    with pytest.raises(GridError, match="may not set norm"):
        AttackSpec("pgd", "linf", 0.5, {"norm": "l2"})


@pytest.mark.parametrize(("text", "message"), [
    ('[[attack]]\nname = "pgd"\nnorms = ["L2"]\neps = [0.5]\n', "unknown norm 'L2'"),
    ('[[attack]]\nname = "pgd"\nnorms = ["l7"]\neps = [0.5]\n', "unknown norm 'l7'"),
    ('[[attack]]\nname = "deepfool"\nnorms = ["l0"]\novershoot = [0.5]\n', "no l0 form"),
    ('[[attack]]\nname = "pgd"\nnorms = "linf"\neps = [0.5]\n', "norms must be a list"),
    ('[[attack]]\nname = "pgd"\neps = 0.03\n', "eps must be a non-empty list of numbers"),
    ('[[attack]]\nname = "pgd"\neps = ["4/255"]\n', "eps must be a non-empty list"),
    ('[[attack]]\nname = "pgd"\nstepz = 3\neps = [0.1]\n', r"unknown key\(s\) stepz"),
    ('[[attacks]]\nname = "pgd"\neps = [0.1]\n', "unknown top-level key"),
])
def test_bad_toml_grids_get_clear_errors(tmp_path, text, message):
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    with pytest.raises(GridError, match=message):
        load_grid(grid)


@pytest.mark.parametrize(("document", "message"), [
    ([{"name": "pgd", "eps": [0.1]}], "top level must be an object"),
    ({"attack": ["pgd"]}, "expected a table of settings"),
    ({"attack": {"name": "pgd"}}, "must be a list of tables"),
    ({"attack": [{"name": "pgd", "eps": 0.1}]}, "eps must be a non-empty list"),
    ({"attack": [{"name": "pgd", "eps": [0.1]}, {"name": "pgd", "eps": [0.1]}]},
     r"entry 1, line 3 and attack entry 2, line 9"),
])
def test_bad_json_grids_get_clear_errors(tmp_path, document, message):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(document, indent=0))
    with pytest.raises(GridError, match=message):
        load_grid(grid)


def readme_grid() -> str:
    text = README.read_text()
    match = re.search(r"```toml\n(# grid\.toml.*?)```", text, re.DOTALL)
    assert match, "the README documents the grid format with a TOML example"
    return match.group(1)


def test_the_readme_grid_example_runs(tmp_path, default_model):
    path = tmp_path / "grid.toml"
    path.write_text(readme_grid())
    grid = load_grid(path)
    assert [spec.label() for spec in grid] == [
        "pgd-linf-eps0.03", "pgd-linf-eps0.03", "fgsm-linf-eps0.01", "fgsm-l2-eps0.01",
        "deepfool-l2-overshoot0.02"]
    summary = build(load_samples("imagenet")[:1], default_model, grid, tmp_path / "study")
    assert len(summary.manifest) == 5 and summary.manifest.id.is_unique


# --- counts and budgets -------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--steps", "--batch-size", "--limit"])
def test_zero_counts_are_refused(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["build", "--attacks", "pgd", "--strengths", "0.01", option, "0",
              "--out", str(tmp_path / "s")])
    assert exited.value.code == 2
    assert f"argument {option}: must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        options_grid(["pgd"], ["linf"], [0.01], steps=0)


def test_library_refuses_a_zero_batch_size(two_photos, default_model, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        build(two_photos, default_model, pgd(1), tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        scoring.score_study(tmp_path, ["psnr"], batch_size=0)


def test_an_eps_meant_in_levels_is_warned_about(default_model, tmp_path):
    from advqa.attacks import scale_note

    text, suspect = scale_note("linf", 4, (3, 224, 224))
    assert suspect and "0.01569" in text  # 4/255
    assert not scale_note("linf", 4 / 255, (3, 224, 224))[1]
    text, suspect = scale_note("l2", 4, (3, 224, 224))
    assert not suspect and "0.0103" in text  # 4/sqrt(150528)
    assert scale_note("l2", 400, (3, 224, 224))[1]
    assert scale_note("l1", 2e5, (3, 224, 224))[1]
    with pytest.warns(UserWarning, match=r"fgsm-linf-eps4: .*whole \[0, 1\] range"):
        build(load_samples("imagenet")[:1], default_model,
              grid_from_options(["fgsm"], ["linf"], [4.0]), tmp_path)


# --- resumes ------------------------------------------------------------------------------

def test_a_different_grid_needs_append_and_is_recorded(two_photos, default_model, tmp_path):
    build(two_photos, default_model, pgd(2), tmp_path)
    with pytest.raises(ValueError, match="--append"):
        build(two_photos, default_model, pgd(6), tmp_path)
    summary = build(two_photos, default_model, pgd(6), tmp_path, append=True)
    assert summary.notes == [f"appended 1 grid cells to the 1 already in {tmp_path}"]
    study = json.loads((tmp_path / "study.json").read_text())
    assert [cell["steps"] for cell in study["grid"]] == [2, 6]
    assert [[cell["steps"] for cell in grid] for grid in study["grids"]] == [[2], [6]]
    assert len(summary.manifest) == 4
    # The same grid again resumes without --append and changes nothing.
    again = build(two_photos, default_model, pgd(6), tmp_path, append=True)
    assert again.notes == [] and len(again.manifest) == 4


@pytest.mark.parametrize(("first", "second", "setting"), [
    ({"keep_failed": False}, {"keep_failed": True}, "keep_failed"),
    ({"batch_size": 1}, {"batch_size": 2}, "batch_size"),
])
def test_settings_that_change_the_files_cannot_change_on_resume(
        two_photos, default_model, tmp_path, first, second, setting):
    grid = grid_from_options(["fgsm"], ["l2"], [0.003])  # never fools: nothing kept
    build_dataset(two_photos, default_model, grid, tmp_path, progress=False, **first)
    with pytest.raises(ValueError, match=f"built with {setting}"):
        build_dataset(two_photos, default_model, grid, tmp_path, progress=False, **second)
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert all((tmp_path / path).is_file() for path in manifest.adversarial_path)


def test_another_source_with_the_same_names_is_refused(default_model, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for sample in load_samples("imagenet")[:1]:
        save_png(sample.image, photos / f"{sample.name}.png")
    study = tmp_path / "study"
    build(load_samples("imagenet")[:1], default_model, pgd(1), study)
    from advqa.data import load_folder

    # Same name, other pixels: the reference on disk must not be mixed with new AEs.
    first = load_samples("imagenet")[1]
    save_png(first.image, photos / f"{load_samples('imagenet')[0].name}.png")
    with pytest.raises(ValueError, match="holds a different image"):
        build(load_folder(photos), default_model, pgd(1), study, append=True)


def test_labels_outside_the_model_are_refused_up_front(default_model, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    samples = load_samples("imagenet")[:2]
    for sample in samples:
        save_png(sample.image, photos / f"{sample.name}.png")
    (photos / "labels.csv").write_text(
        f"filename,label\n{samples[0].name},5000\n{samples[1].name},3\n")
    from advqa.data import load_folder

    loaded = load_folder(photos, labels=photos / "labels.csv")
    study = tmp_path / "study"
    with pytest.raises(ValueError, match=r"1 label\(s\) outside the 1000 classes.*"
                       + re.escape(samples[0].name) + ".*label 5000"):
        build(loaded, default_model, pgd(1), study)
    assert not study.exists()  # refused before anything was written


# --- one writer at a time -----------------------------------------------------------------

HOLDER = """
import sys, time
from advqa.study.store import StudyLock
with StudyLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_writer_is_refused_and_a_dead_ones_lock_taken_over(
        two_photos, default_model, tmp_path):
    build(two_photos, default_model, pgd(1), tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StudyLockedError, match=rf"in use by process {holder.pid}"):
            build(two_photos, default_model, pgd(1), tmp_path)
        with pytest.raises(StudyLockedError, match=rf"in use by process {holder.pid}"):
            scoring.score_study(tmp_path, ["psnr"], progress=False)
        # A temporary file of a live writer must survive another run's clean-up.
        live = tmp_path / "images" / "adv" / f".x.png.{holder.pid}-{'a' * 16}.tmp"
        live.write_bytes(b"in flight")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    dead = tmp_path / f".y.png.{holder.pid}-{'b' * 16}.tmp"
    dead.write_bytes(b"left by a killed run")
    with pytest.warns(UserWarning, match=f"took over the lock of process {holder.pid}"):
        summary = build(two_photos, default_model, pgd(1), tmp_path)
    assert len(summary.manifest) == 2
    assert not live.exists() and not dead.exists()  # the writer is dead now: both stale


def test_cleanup_keeps_a_live_processes_temporaries(tmp_path):
    from advqa.data import remove_stale_temporaries

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".a.png.{sleeper.pid}-{'c' * 16}.tmp"
        foreign = tmp_path / ".notes.tmp"  # no PID: not ours to judge
        live.write_bytes(b"x")
        foreign.write_bytes(b"x")
        assert remove_stale_temporaries(tmp_path) == []
        assert live.exists() and foreign.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_temporaries(tmp_path) == [live]


def test_two_concurrent_builds_do_not_both_run(tmp_path):
    command = [sys.executable, "-m", "advqa", "build", "--source", "imagenet", "--limit", "2",
               "--attacks", "pgd", "--strengths", "0.01", "--steps", "150", "--no-progress",
               "--out", str(tmp_path)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "study.lock").is_file() or not (tmp_path / "study.lock").stat().st_size:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second = subprocess.run(command, capture_output=True, text=True)
    first.communicate()
    assert first.returncode == 0
    assert second.returncode != 0
    assert f"in use by process {first.pid}" in second.stderr


# --- scores -------------------------------------------------------------------------------

def direct(metric: str, study: Path, row) -> float:
    reference = read_image(study / row.reference_path)[None]
    adversarial = read_image(study / row.adversarial_path)[None]
    return get_metric(metric)(adversarial, reference).item()


def test_scores_follow_the_files_after_a_rebuild(tmp_path):
    """The issue's case: build with 5 steps, score, rebuild with 20 steps, score again."""
    out = str(tmp_path)
    common = ["build", "--source", "imagenet", "--limit", "2", "--attacks", "pgd",
              "--strengths", "0.01", "--keep-failed", "--no-progress", "--out", out]
    assert main([*common, "--steps", "5"]) == 0
    assert main(["score", "--study", out, "--metrics", "psnr,l2", "--no-progress"]) == 0
    assert main([*common, "--steps", "20"]) == 2  # another grid: refused without --append
    assert main([*common, "--steps", "20", "--append"]) == 0
    assert main(["score", "--study", out, "--metrics", "psnr,l2", "--no-progress"]) == 0
    scored = pd.read_parquet(tmp_path / "scored_manifest.parquet")
    manifest = pd.read_parquet(tmp_path / "manifest.parquet").set_index("id")
    assert len(scored) == 4
    for row in scored.itertuples():
        assert row.psnr == pytest.approx(direct("psnr", tmp_path, row), rel=1e-6)
        assert row.l2 == pytest.approx(manifest.loc[row.id, "l2"], rel=1e-5)


def test_an_ae_changed_after_scoring_is_not_shown_with_its_old_score(tmp_path, default_model):
    build(load_samples("imagenet")[:1], default_model, pgd(3), tmp_path)
    scoring.score_study(tmp_path, ["psnr"], progress=False)
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    path = tmp_path / manifest.adversarial_path[0]
    save_png(read_image(tmp_path / manifest.reference_path[0]), path)  # edited by hand
    with pytest.warns(UserWarning, match="not the file the manifest lists"):
        wide = scoring.score_study(tmp_path, ["psnr"], progress=False)
    assert wide.psnr.isna().all()
    failures = pd.read_csv(tmp_path / "score_failures.csv")
    assert "SHA-256 differs" in failures.error[0]


def test_failed_scores_are_retried_once_the_file_is_fixed(tmp_path, default_model):
    build(load_samples("imagenet")[:2], default_model, pgd(3), tmp_path)
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    path = tmp_path / manifest.adversarial_path[0]
    good = path.read_bytes()
    path.write_bytes(good[:100])  # truncated
    with pytest.warns(UserWarning, match="cannot score"):
        wide = scoring.score_study(tmp_path, ["psnr"], progress=False)
    assert wide.psnr.isna().sum() == 1 and wide.psnr.notna().sum() == 1
    path.write_bytes(good)
    wide = scoring.score_study(tmp_path, ["psnr"], progress=False)
    assert wide.psnr.notna().all()
    assert pd.read_csv(tmp_path / "score_failures.csv").empty


def assert_batching_tolerance(first: pd.DataFrame, second: pd.DataFrame) -> None:
    """The documented tolerance: logits are computed per image, so ``js`` is bit-identical
    however a run is batched; AdvDSS (inside AEQA) runs a batched FFT whose float32
    rounding may differ by an ulp, so ``aeqa`` agrees to 2e-7 relative."""
    assert first.id.tolist() == second.id.tolist()
    if "js" in first:
        assert first.js.tolist() == second.js.tolist()
    pd.testing.assert_series_equal(first.aeqa, second.aeqa, check_exact=False, rtol=2e-7,
                                   atol=0)


def test_aeqa_does_not_depend_on_batching(tmp_path, default_model):
    build(load_samples("imagenet")[:4], default_model,
          grid_from_options(["fgsm"], ["linf"], [2 / 255, 8 / 255]), tmp_path)
    scores = []
    for batch_size in (16, 3):
        (tmp_path / "ledger.sqlite").unlink()  # forget the scores, keep the study
        scores.append(scoring.score_study(tmp_path, ["aeqa", "js"], model=default_model,
                                          batch_size=batch_size, progress=False))
    assert_batching_tolerance(scores[0], scores[1])


def test_a_killed_and_resumed_score_equals_an_uninterrupted_one(tmp_path, default_model):
    build(load_samples("imagenet")[:3], default_model,
          grid_from_options(["fgsm"], ["linf"], [2 / 255, 8 / 255]), tmp_path)
    whole = scoring.score_study(tmp_path, ["aeqa", "js"], model=default_model, batch_size=16,
                                progress=False)
    with sqlite3.connect(tmp_path / "ledger.sqlite") as connection:  # "killed" midway
        connection.execute("DELETE FROM job_rows WHERE job = 'score' AND rowid % 2 = 0")
    resumed = scoring.score_study(tmp_path, ["aeqa", "js"], model=default_model, batch_size=2,
                                  progress=False)
    assert_batching_tolerance(whole, resumed)
    assert torch.isfinite(torch.tensor(resumed.aeqa.to_numpy())).all()


def test_study_lock_is_reentrant_across_sequential_uses(tmp_path):
    with StudyLock(tmp_path):
        pass
    with StudyLock(tmp_path):  # a clean release leaves no owner to report
        assert json.loads((tmp_path / "study.lock").read_text())["pid"] == os.getpid()


# --- advqa attack -------------------------------------------------------------------------

@pytest.fixture
def two_pngs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    samples = load_samples("imagenet")[:2]
    for sample in samples:
        save_png(sample.image, folder / f"{sample.name}.png")
    return folder, samples


def test_attack_refuses_labels_outside_the_model_naming_the_row(two_pngs, tmp_path, capsys):
    folder, samples = two_pngs
    labels = tmp_path / "labels.csv"
    labels.write_text(f"filename,label\n{samples[0].name},3\n{samples[1].name},5000\n")
    code = main(["attack", str(folder), str(tmp_path / "out"), "--attack", "fgsm",
                 "--labels", str(labels)])
    assert code == 2
    error = capsys.readouterr().err
    assert f"{labels}, line 3: label 5000 is not in 0..999" in error
    assert not (tmp_path / "out").exists()


def test_attack_warns_about_an_eps_in_levels_and_explains_l2(two_pngs, tmp_path, capsys):
    folder, _ = two_pngs
    assert main(["attack", str(folder), str(tmp_path / "a"), "--attack", "fgsm",
                 "--eps", "4"]) == 0
    assert re.search(r"warning: L∞ ε = 4 ≥ 1 .*whole \[0, 1\] range.*for 4/255 write 0\.01569",
                     capsys.readouterr().err)
    assert main(["attack", str(folder), str(tmp_path / "b"), "--attack", "fgsm",
                 "--norm", "l2", "--eps", "4"]) == 0
    assert "L2 ε = 4 on 3×224×224 images equals a change of every component by 0.0103" \
        in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--batch-size", "--steps"])
def test_attack_refuses_zero_counts(two_pngs, tmp_path, capsys, option):
    folder, _ = two_pngs
    with pytest.raises(SystemExit) as exited:
        main(["attack", str(folder), str(tmp_path / "out"), option, "0"])
    assert exited.value.code == 2
    assert f"argument {option}: must be >= 1" in capsys.readouterr().err


def test_attack_never_writes_over_its_input(two_pngs, capsys):
    folder, _ = two_pngs
    before = {path: path.read_bytes() for path in folder.iterdir()}
    assert main(["attack", str(folder), str(folder), "--attack", "fgsm"]) == 2
    assert "would overwrite them" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in folder.iterdir()} == before


def test_build_skips_a_reference_whose_pixels_fail_to_decode(two_pngs, tmp_path,
                                                             default_model):
    import skimage

    from advqa.data import load_folder

    folder, _ = two_pngs
    data = (Path(skimage.__file__).parent / "data" / "rocket.jpg").read_bytes()
    (folder / "damaged.jpg").write_bytes(data[:len(data) // 2] + b"\xff\xd9")
    with pytest.warns(UserWarning, match="damaged.jpg"):
        summary = build(load_folder(folder), default_model, pgd(1), tmp_path / "study")
    assert len(summary.manifest) == 2
    failures = pd.read_csv(tmp_path / "study" / "failures.csv")
    assert [Path(p).name for p in failures.path] == ["damaged.jpg"]
    assert "premature end of data segment" in failures.reason[0]
