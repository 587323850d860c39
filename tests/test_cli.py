"""The advqa command: help, errors with exit codes, and folder-in folder-out attacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from advqa.cli.main import main
from advqa.data import load_samples, read_image, save_png


@pytest.mark.parametrize("command", [[], ["models"], ["attack"], ["build"], ["run"]])
def test_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "usage: advqa" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out


def test_models_lists_default_with_weights(capsys):
    assert main(["models", "--available"]) == 0
    output = capsys.readouterr().out
    assert "efficientnet-lite0" in output and "present" in output


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for sample in load_samples("imagenet")[:2]:
        save_png(sample.image, folder / f"{sample.name}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    return folder


def test_attack_folder_skips_corrupt_images(photo_folder, tmp_path, capsys):
    output = tmp_path / "out"
    code = main(["attack", str(photo_folder), str(output), "--attack", "fgsm", "--eps", "4/255"])
    captured = capsys.readouterr()
    assert code == 0
    assert "broken.jpg" in captured.err  # the warning names the file
    failures = pd.read_csv(output / "failures.csv")
    assert failures.path.str.endswith("broken.jpg").tolist() == [True]
    results = pd.read_parquet(output / "results.parquet")
    assert sorted(results.image) == ["imagenet_00_243", "imagenet_01_559"]
    for row in results.itertuples():
        image = read_image(output / f"{row.image}.png")
        assert image.shape == (3, 224, 224)
        assert row.linf <= 4 / 255 + 0.5 / 255 + 1e-6


def test_attack_folder_skips_images_whose_pixels_are_corrupt(photo_folder, tmp_path, capsys):
    # A JPEG whose entropy-coded data is damaged passes the header checks made when
    # the folder is listed; decoding its batch finds it, and the run goes on.
    import skimage

    data = (Path(skimage.__file__).parent / "data" / "rocket.jpg").read_bytes()
    middle = len(data) // 2
    (photo_folder / "damaged.jpg").write_bytes(data[:middle] + b"\xff\xd9")
    output = tmp_path / "out"
    code = main(["attack", str(photo_folder), str(output), "--attack", "fgsm", "--eps", "4/255",
                 "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 0
    assert "damaged.jpg: Corrupt JPEG data: premature end of data segment" in captured.err
    assert "/2 images fooled, 2 unreadable" in captured.out
    failures = pd.read_csv(output / "failures.csv")
    assert sorted(Path(path).name for path in failures.path) == ["broken.jpg", "damaged.jpg"]
    assert "premature end" in failures.set_index("path").reason[str(photo_folder / "damaged.jpg")]
    results = pd.read_parquet(output / "results.parquet")
    assert sorted(results.image) == ["imagenet_00_243", "imagenet_01_559"]
    assert not (output / "damaged.png").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--attack", "pdg"], "valid names: fgsm, bim, pgd, mim, deepfool, cw"),
    (["--model", "resnet"], "valid names: efficientnet-lite0"),
    (["--eps", "-1"], "eps for norm linf must be a finite number > 0"),
    (["--attack", "deepfool", "--norm", "l0"], "supports norms"),
])
def test_bad_arguments_exit_2_with_a_reason(photo_folder, tmp_path, capsys, arguments, message):
    assert main(["attack", str(photo_folder), str(tmp_path / "out"), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_missing_weights_exit_2_naming_the_file(photo_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ADVQA_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code = main(["attack", str(photo_folder), str(tmp_path / "out"),
                 "--model", "torchvision:inception_v3"])
    assert code == 2
    assert "inception_v3_google-0cc3c7bd.pth" in capsys.readouterr().err


def test_build_needs_strengths_with_attacks(tmp_path, capsys):
    assert main(["build", "--out", str(tmp_path), "--attacks", "pgd"]) == 2
    assert "--strengths" in capsys.readouterr().err


def test_console_script_exit_code_for_missing_folder(tmp_path):
    executable = shutil.which("advqa") or f"{sys.prefix}/bin/advqa"
    finished = subprocess.run([executable, "attack", str(tmp_path / "nowhere"), str(tmp_path)],
                              capture_output=True, text=True)
    assert finished.returncode == 2
    assert "does not exist" in finished.stderr


@pytest.fixture(scope="module")
def image_pair(tmp_path_factory):
    import torch

    from advqa.data import preprocess

    folder = tmp_path_factory.mktemp("pair")
    photo = preprocess(load_samples("photos")[:1], size=192)[0]  # MS-SSIM needs 176×176
    noise = torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))
    save_png(photo, folder / "reference.png")
    save_png((photo + 0.03 * noise).clamp(0, 1), folder / "distorted.png")
    return folder / "reference.png", folder / "distorted.png"


def printed_scores(output: str) -> dict[str, float]:
    rows = [line.split() for line in output.splitlines() if not line.startswith("note:")]
    return {row[0]: float(row[1]) for row in rows if len(row) == 2}


def test_score_pair_without_model_skips_model_metrics_with_a_note(image_pair, capsys):
    from advqa.quality.scoring import default_metrics

    reference, distorted = image_pair
    assert main(["score", str(reference), str(distorted)]) == 0
    output = capsys.readouterr().out
    assert {"js", "aeqa"} <= set(default_metrics())
    assert set(printed_scores(output)) == set(default_metrics()) - {"js", "aeqa"}
    for name in ("js", "aeqa"):
        assert f"note: {name} skipped: needs a classifier: give --model" in output


def test_score_pair_with_model_computes_model_metrics(image_pair, capsys):
    import torch

    from advqa.models import load_classifier
    from advqa.quality import get_metric, score_pair

    reference, distorted = image_pair
    model = load_classifier("efficientnet-lite0")
    images = read_image(distorted)[None], read_image(reference)[None]
    with torch.no_grad():
        direct = {name: get_metric(name, model=model)(*images).item() for name in ("aeqa", "js")}
    result = score_pair(reference, distorted, ["aeqa", "js", "psnr"], model=model)
    assert result.skipped == {}
    assert {name: result.scores[name] for name in direct} == direct
    assert result.scores["psnr"] == get_metric("psnr")(*images).item()
    arguments = ["score", str(reference), str(distorted), "--metrics", "aeqa,js",
                 "--model", "efficientnet-lite0"]
    assert main(arguments) == 0
    output = capsys.readouterr().out
    assert "note:" not in output
    assert printed_scores(output) == pytest.approx(direct, rel=1e-5)
