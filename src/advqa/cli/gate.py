"""``advqa detect fit-gate``, ``gate-eval``, ``gate-key`` and ``advqa screen``.

The fit-for-task gate of Feng & Cai (see :mod:`advqa.detect.gate`). Wire with
``add_commands(detect_subparsers)`` for the three ``detect`` commands and
``register(subparsers)`` for the top-level ``screen``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from advqa.cli.common import CommandError, add_model_options, load_model, number


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_generation_options(parser) -> None:
    parser.add_argument("--source", default="imagenet",
                        help="sample set name or image folder (labels used when present); "
                        "default: %(default)s (20 labelled ImageNet photos: tiny)")
    add_model_options(parser)
    parser.add_argument("--quality", default="brisque",
                        help="no-reference metric of the quality feature (brisque, niqe or any "
                        "registry NR metric); default: %(default)s")
    parser.add_argument("--quality-threshold", type=number, default=0.3,
                        help="Baseline-2 / gate quality threshold on the normalised [0, 1] "
                        "scale (default: %(default)s); a negative value disables it")
    parser.add_argument("--no-squeeze", action="store_true",
                        help="leave out feature squeezing")
    parser.add_argument("--target-fpr", type=number, default=0.05,
                        help="false-positive rate on clean training images at which the "
                        "feature-squeezing threshold is set (default: %(default)s)")
    parser.add_argument("--norm", choices=("linf", "l2"), default="linf",
                        help="ball of the universal perturbation (default: %(default)s)")
    parser.add_argument("--radius", type=number, default=10 / 255,
                        help="radius ξ of the universal perturbation (default: 10/255)")
    parser.add_argument("--uap-epochs", type=int, default=3,
                        help="passes of the UAP algorithm over the images (default: %(default)s)")
    parser.add_argument("--penalty", type=number, default=1.0, help="SVM C (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")


def _add_key_option(parser) -> None:
    parser.add_argument("--key-file", type=Path, default=None,
                        help="file holding the gate signing key (from `advqa detect gate-key`); "
                        "default: the file named by $ADVQA_GATE_KEY_FILE")


def add_commands(detect_subparsers) -> None:
    """Add ``fit-gate``, ``gate-eval`` and ``gate-key`` to the ``advqa detect`` subcommands."""
    fit = detect_subparsers.add_parser(
        "fit-gate", help="fit a fit-for-task gate (Feng & Cai) and write gate.json/.npz",
        description="Generate clean and universal-adversarial (DeepFool UAP) images from a "
        "source for a model, train the RBF-SVM fit-for-task detector on them (top-5 softmax "
        "+ normalised NR quality), calibrate feature squeezing, and write the gate as JSON "
        "plus a .npz of arrays (no pickle).")
    _add_generation_options(fit)
    fit.add_argument("--ws", action="store_true",
                     help="also calibrate the WS steganalysis detector, if available")
    fit.add_argument("--out", type=Path, default=Path("gate.json"),
                     help="gate JSON path; arrays go next to it as .npz (default: gate.json)")
    _add_key_option(fit)
    fit.set_defaults(handler=run_fit)

    key = detect_subparsers.add_parser(
        "gate-key", help="create a secret key for signing gates",
        description="Write a new random 256-bit key (hex) to PATH, readable by you only (mode "
        "0600). `fit-gate --key-file PATH` signs a gate with it (HMAC-SHA256) and `screen "
        "--key-file PATH` refuses a gate whose signature does not match. An existing file is "
        "never overwritten. Keep the key secret: whoever reads it can sign forged gates.")
    key.add_argument("path", type=Path, help="key file to create")
    key.set_defaults(handler=run_key)

    evaluate = detect_subparsers.add_parser(
        "gate-eval", help="Feng & Cai's Tables IV/V on generated image groups",
        description="Generate the clean, distorted (blur, noise, JPEG, JPEG2000 × 5 levels), "
        "recognizable-adversarial (DeepFool UAP) and fooling (gradient ascent from the mean "
        "image) groups; over repeated grouped 50/50 splits of the clean/adversarial pairs, "
        "train the SVM and report detection rate and the victim's accuracy on images judged "
        "fit, with Baseline-1 (no gate), Baseline-2 (quality threshold) and feature squeezing. "
        "Writes table_iv.csv, table_v.csv, per_distortion.csv, runs.csv and summary.json.")
    _add_generation_options(evaluate)
    evaluate.add_argument("--repeats", type=int, default=10,
                          help="grouped 50/50 splits (default: %(default)s)")
    evaluate.add_argument("--fooling", type=int, default=10,
                          help="fooling images to generate (default: %(default)s)")
    evaluate.add_argument("--out", type=Path, required=True, help="output folder")
    evaluate.set_defaults(handler=run_eval)


def register(subparsers) -> None:
    """Add the top-level ``advqa screen`` command."""
    parser = subparsers.add_parser(
        "screen", help="screen a folder of images with a fitted gate",
        description="Run a gate (from `advqa detect fit-gate`) on every image of FOLDER and "
        "write a CSV: path, decision (fit/unfit), reasons, the victim's prediction and every "
        "score. Unreadable images are skipped and listed; the exit code is 1 if any were.")
    parser.add_argument("folder", type=Path, help="folder of images")
    parser.add_argument("--gate", type=Path, required=True, help="gate JSON file")
    _add_key_option(parser)
    parser.add_argument("--allow-unsigned", action="store_true",
                        help="load a gate that cannot be verified (unsigned, or no key given); "
                        "its checksums then catch corruption only, not deliberate edits")
    parser.add_argument("--out", type=Path, default=Path("decisions.csv"),
                        help="CSV to write (default: %(default)s)")
    parser.add_argument("--recursive", action="store_true", help="include sub-folders")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch")
    parser.add_argument("--device", default=None, help="torch device (default: cpu)")
    parser.set_defaults(handler=run_screen)


def _check_common(arguments) -> None:
    if arguments.radius <= 0:
        raise CommandError("--radius must be positive")
    if not 0 <= arguments.target_fpr < 1:
        raise CommandError("--target-fpr must be in [0, 1)")
    if arguments.uap_epochs < 1:
        raise CommandError("--uap-epochs must be 1 or more")


def _groups(arguments, *, fooling: int, distortions):
    from advqa.data import load_source
    from advqa.detect.distortions import DISTORTIONS
    from advqa.detect.features import QualityScale
    from advqa.detect.groups import build_groups
    from advqa.detect.squeeze import FeatureSqueezing

    model = load_model(arguments)
    samples = load_source(arguments.source)
    scale = QualityScale.default(arguments.quality)
    squeezer = None if arguments.no_squeeze else FeatureSqueezing()
    ws = None
    if getattr(arguments, "ws", False):
        from advqa.detect.gate import _ws_detector

        ws = _ws_detector()
    groups = build_groups(
        model, samples, scale, squeezer=squeezer, ws=ws,
        uap={"radius": arguments.radius, "norm": arguments.norm,
             "epochs": arguments.uap_epochs},
        fooling_count=fooling, distortions=DISTORTIONS if distortions else (),
        seed=arguments.seed, progress=_progress)
    return model, scale, groups


def run_key(arguments) -> int:
    from advqa.detect.gate import create_gate_key

    try:
        path = create_gate_key(arguments.path)
    except FileExistsError as error:
        raise CommandError(str(error)) from error
    print(f"wrote {path} (readable by you only); sign with `advqa detect fit-gate --key-file "
          f"{path}`, verify with `advqa screen --key-file {path}`; keep it secret")
    return 0


def run_fit(arguments) -> int:
    from advqa.detect.gate import Gate, read_gate_key

    _check_common(arguments)
    key = read_gate_key(arguments.key_file)  # before the long fit: a bad key fails fast
    if key is None:
        print("warning: no key (--key-file or ADVQA_GATE_KEY_FILE): the gate will be unsigned "
              "and `advqa screen` will load it only with --allow-unsigned; create a key with "
              "`advqa detect gate-key PATH`", file=sys.stderr)
    model, scale, groups = _groups(arguments, fooling=0, distortions=False)
    threshold = arguments.quality_threshold if arguments.quality_threshold >= 0 else None
    gate = Gate.from_features(
        groups.clean.features, groups.adversarial.features, scale=scale,
        quality_threshold=threshold, use_squeeze=not arguments.no_squeeze,
        target_fpr=arguments.target_fpr, use_ws=arguments.ws, penalty=arguments.penalty,
        model_name=model.info.name, weights=arguments.weights, model=model,
        metadata={"source": str(arguments.source), "uap": groups.summary["uap"],
                  "clean_names": groups.summary["clean_names"]})
    json_path, arrays_path = gate.save(arguments.out, key=key)
    flagged = sum(not d.fit for d in gate.decide(groups.adversarial.features))
    alarms = sum(not d.fit for d in gate.decide(groups.clean.features))
    signed = "signed" if key else "UNSIGNED"
    print(f"wrote {json_path} and {arrays_path} ({signed}): detectors "
          f"{', '.join(gate.detectors)}; on its training images it flags "
          f"{flagged}/{len(groups.adversarial)} adversarial and {alarms}/{len(groups.clean)} "
          "clean (optimistic: training data)")
    return 0


def run_eval(arguments) -> int:
    from advqa.detect.fitness_eval import evaluate, write_tables

    _check_common(arguments)
    if arguments.repeats < 1:
        raise CommandError("--repeats must be 1 or more")
    if arguments.fooling < 0:
        raise CommandError("--fooling must be 0 or more")
    _, _, groups = _groups(arguments, fooling=arguments.fooling, distortions=True)
    threshold = arguments.quality_threshold if arguments.quality_threshold >= 0 else 0.3
    result = evaluate(groups, repeats=arguments.repeats, seed=arguments.seed,
                      quality_threshold=threshold, target_fpr=arguments.target_fpr,
                      penalty=arguments.penalty)
    settings = {key: (str(value) if isinstance(value, Path) else value)
                for key, value in vars(arguments).items() if key != "handler"}
    for path in write_tables(result, groups, arguments.out, settings):
        print(f"wrote {path}")
    return 0


def run_screen(arguments) -> int:
    from advqa.data import ImageReadError, find_images, read_image
    from advqa.detect.gate import Gate, read_gate_key

    if not arguments.folder.is_dir():
        raise CommandError(f"not a directory: {arguments.folder}")
    if arguments.batch_size < 1:
        raise CommandError("--batch-size must be 1 or more")
    gate = Gate.load(arguments.gate, key=read_gate_key(arguments.key_file),
                     allow_unsigned=arguments.allow_unsigned, device=arguments.device)
    files = find_images(arguments.folder, recursive=arguments.recursive)
    images, names, failures = [], [], []
    for name in files:
        try:
            images.append(read_image(arguments.folder / name))
            names.append(name)
        except (ImageReadError, OSError, ValueError) as error:
            failures.append((name, str(error)))
    rows = []
    for start in range(0, len(images), arguments.batch_size):
        decisions = gate.check(images[start:start + arguments.batch_size])
        for name, decision in zip(names[start:start + arguments.batch_size], decisions,
                                  strict=True):
            rows.append({"path": name, "decision": decision.label,
                         "reasons": "; ".join(decision.reasons),
                         "prediction": decision.prediction,
                         **{key: f"{value:.6g}" for key, value in decision.scores.items()}})
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    columns = ["path", "decision", "reasons", "prediction"]
    for row in rows:
        columns += [key for key in row if key not in columns]
    with arguments.out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    unfit = sum(row["decision"] == "unfit" for row in rows)
    print(f"wrote {arguments.out}: {len(rows)} image(s), {unfit} unfit, "
          f"{len(rows) - unfit} fit")
    for name, reason in failures:
        print(f"skipped unreadable image {name}: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} image(s) could not be read", file=sys.stderr)
        return 1
    return 0
