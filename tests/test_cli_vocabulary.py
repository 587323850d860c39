"""One CLI vocabulary: shared flags, exit codes, references beside AEs, plug-ins.

Every subcommand's ``--help`` is walked; the friction points of issue 16 §3 each have a
test here (or, for ``screen``, in test_gate.py).
"""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
import torch

from advqa.cli.main import main, parser


def _commands(node=None, path=()):
    node = node or parser()
    yield path, node
    for action in node._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def _options(node) -> dict[str, argparse.Action]:
    return {option: action for action in node._actions for option in action.option_strings}


COMMANDS = list(_commands())


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda p: " ".join(p))
def test_every_help_renders_and_shares_the_flags(path, capsys):
    node = dict(COMMANDS)[path]
    with pytest.raises(SystemExit) as exit_info:
        main([*path, "--help"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("usage: advqa")
    options = _options(node)
    assert "--quiet" not in options, "the one progress flag is --no-progress"
    if "--model" in options:
        assert "--device" in options
    if "--device" in options:
        assert "cuda if present" in options["--device"].help
    if "--engine" in options or "--no-progress" in options:
        assert "--no-progress" in options
    positional = [action.dest for action in node._actions if not action.option_strings]
    assert "study" not in positional, "a study is --study (or the STUDY of add_study_argument)"
    if "study_position" in positional:
        assert "--study" in options


def test_top_level_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "exit codes" in text and "every item failed" in text and "130" in text
    assert "module:Callable" in text and "--no-progress" in text


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A folder with one photo and one broken file, one with only a broken file, one empty."""
    from skimage import data as skimage_data

    from advqa.data import save_png

    root = tmp_path_factory.mktemp("cli")
    for name in ("mixed", "broken", "empty"):
        (root / name).mkdir()
    photo = torch.from_numpy(skimage_data.astronaut()[::4, ::4].copy()).permute(2, 0, 1) / 255
    save_png(photo, root / "mixed" / "astronaut.png")
    for name in ("mixed", "broken"):
        (root / name / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return root


@pytest.fixture(scope="module")
def attacked(folders):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        codes = {name: main(["attack", str(folders / name), str(folders / f"out-{name}"),
                             "--attack", "fgsm", "--eps", "2/255", "--no-progress"])
                 for name in ("mixed", "broken", "empty")}
    finally:
        torch.set_num_threads(threads)
    return codes


def test_attack_exit_codes_follow_the_convention(attacked, folders):
    assert attacked == {"mixed": 0, "broken": 1, "empty": 2}
    failures = pd.read_csv(folders / "out-mixed" / "failures.csv")
    assert [name.split("/")[-1] for name in failures.path] == ["truncated.png"]
    assert len(pd.read_csv(folders / "out-broken" / "failures.csv")) == 1


def test_attack_saves_references_that_score_against_its_aes(attacked, folders, capsys):
    from advqa.data import read_image
    from advqa.quality import get_metric

    out = folders / "out-mixed"
    results = pd.read_csv(out / "results.csv")
    reference, adversarial = out / results.reference_path[0], out / results.adversarial_path[0]
    assert reference.is_file() and adversarial.is_file()
    expected = get_metric("psnr")(read_image(adversarial)[None], read_image(reference)[None])
    capsys.readouterr()
    assert main(["score", str(reference), str(adversarial), "--metrics", "psnr"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines[0] == "psnr" and float(lines[1]) == pytest.approx(expected.item(), rel=1e-5)
    # Against its own reference an L∞ 2/255 FGSM AE is close (the old, uncropped file
    # was not even the same size).
    assert read_image(reference).shape == read_image(adversarial).shape
    assert (read_image(reference) - read_image(adversarial)).abs().max() <= 2 / 255 + 1e-6


@pytest.fixture(scope="module")
def built(folders):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: main(["build", "--source", str(folders / name), "--study",
                            str(folders / f"study-{name}"), "--attacks", "fgsm",
                            "--strengths", "1/255", "--no-progress"])
                for name in ("mixed", "broken", "empty")}
    finally:
        torch.set_num_threads(threads)


def test_build_exit_codes_follow_the_convention(built, folders):
    assert built == {"mixed": 0, "broken": 1, "empty": 2}
    assert len(pd.read_csv(folders / "study-broken" / "failures.csv")) == 1


def test_score_prints_only_the_metrics_asked_for(built, folders, capsys):
    study = folders / "study-mixed"
    assert main(["score", "--study", str(study), "--metrics", "psnr,ssim",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["score", "--study", str(study), "--metrics", "psnr", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "psnr" in printed and "ssim" not in printed


def test_a_study_is_named_the_same_way_everywhere(built, folders, capsys):
    study = str(folders / "study-mixed")
    assert main(["detect", "study", study]) == 0
    positional = capsys.readouterr().out
    assert main(["detect", "study", "--study", study]) == 0
    assert capsys.readouterr().out == positional
    assert main(["detect", "study", study, "--study", str(folders)]) == 2
    assert "two studies" in capsys.readouterr().err
    assert main(["evaluate", "aeqa", "--study", study]) == 2  # scored, but no aeqa
    assert "aeqa" in capsys.readouterr().err


def test_unscored_study_error_says_what_to_run(built, folders, capsys):
    assert main(["evaluate", "aeqa", "--study", str(folders / "study-broken")]) == 2
    error = capsys.readouterr().err
    assert "advqa score --study" in error


def readme_block(name: str) -> str:
    """The README's ```python block that starts with ``# <name>``."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(rf"```python\n(# {re.escape(name)}.*?)```", text, re.DOTALL)
    assert match, f"the README shows {name}"
    return match.group(1)


def test_plugins_load_from_the_current_directory(attacked, built, folders, tmp_path,
                                                monkeypatch, capsys):
    """``--metrics module:Class`` in score and ``--model module:Callable`` in attack, with
    the modules in the working directory and no PYTHONPATH."""
    import sys

    (tmp_path / "my_metric.py").write_text(readme_block("my_metric.py"))
    (tmp_path / "my_model.py").write_text(readme_block("my_model.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path
                                      if entry not in ("", str(tmp_path))])
    out = folders / "out-mixed"
    results = pd.read_csv(out / "results.csv")
    capsys.readouterr()
    assert main(["score", str(out / results.reference_path[0]),
                 str(out / results.adversarial_path[0]), "--metrics",
                 "my_metric:MeanShift,psnr"]) == 0
    printed = capsys.readouterr().out
    assert "my_metric:MeanShift" in printed and "psnr" in printed
    assert main(["score", "--study", str(folders / "study-mixed"), "--metrics",
                 "my_metric:MeanShift", "--no-progress"]) == 0
    assert "my_metric:MeanShift" in capsys.readouterr().out
    assert main(["attack", str(folders / "mixed"), str(tmp_path / "ae"), "--model",
                 "my_model:tiny", "--attack", "fgsm", "--eps", "4/255", "--no-progress"]) == 0
    assert (tmp_path / "ae" / "astronaut.png").is_file()
    assert main(["attack", str(folders / "mixed"), str(tmp_path / "ae2"), "--model",
                 "absent_module:tiny", "--no-progress"]) == 2
    assert "absent_module" in capsys.readouterr().err
