"""``advqa detect fit-gate``, ``gate-eval``, ``gate-key`` and ``advqa screen``.

The fit-for-task gate of Feng & Cai (see :mod:`advqa.detect.gate`). Wire with
``add_commands(detect_subparsers)`` for the three ``detect`` commands and
``register(subparsers)`` for the top-level ``screen``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from advqa.cli.common import (
    CommandError,
    add_device_option,
    add_engine_options,
    add_model_options,
    add_progress_option,
    exit_code,
    make_engine,
    name_list,
    number,
    positive_int,
)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_generation_options(parser) -> None:
    parser.add_argument("--source", default="imagenet",
                        help="sample set name or image folder (labels used when present); "
                        "default: %(default)s (20 labelled ImageNet photos: tiny)")
    add_model_options(parser)
    parser.add_argument("--quality", default="dtniq",
                        help="no-reference metric of the quality feature: dtniq (the paper's "
                        "DTNIQ-f design; the shipped model is a VIF-trained proxy), brisque, "
                        "niqe or any registry NR metric; default: %(default)s")
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
    parser.add_argument("--uap-epochs", type=positive_int, default=3,
                        help="passes of the UAP algorithm over the images (default: %(default)s)")
    parser.add_argument("--uap-images", type=positive_int, default=None,
                        help="fit the UAP on a seeded random subset of this many clean images "
                        "(default: all of them; the paper used the published UAP, fitted on "
                        "10,000 ImageNet training images); every clean image is perturbed")
    parser.add_argument("--penalty", type=number, default=1.0, help="SVM C (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    add_engine_options(parser)


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
    add_progress_option(fit)
    fit.add_argument("--ws", action="store_true",
                     help="also calibrate the WS steganalysis detector, if available")
    fit.add_argument("--out", type=Path, default=Path("gate.json"),
                     help="gate JSON path; arrays go next to it as .npz, and the work ledger "
                     "(for resuming) as <stem>.ledger.sqlite (default: gate.json)")
    _add_key_option(fit)
    fit.set_defaults(handler=run_fit)
    add_key_command(detect_subparsers)
    add_eval_command(detect_subparsers)


def add_key_command(detect_subparsers) -> None:
    key = detect_subparsers.add_parser(
        "gate-key", help="create a secret key for signing gates",
        description="Write a new random 256-bit key (hex) to PATH, readable by you only (mode "
        "0600). `fit-gate --key-file PATH` signs a gate with it (HMAC-SHA256) and `screen "
        "--key-file PATH` refuses a gate whose signature does not match. An existing file is "
        "never overwritten. Keep the key secret: whoever reads it can sign forged gates.")
    key.add_argument("path", type=Path, help="key file to create")
    key.set_defaults(handler=run_key)


def add_eval_command(detect_subparsers) -> None:
    from advqa.detect.distortions import DISTORTIONS

    evaluate = detect_subparsers.add_parser(
        "gate-eval", help="Feng & Cai's Tables II-V and Fig. 4 on generated image groups",
        description="Generate the clean, distorted (blur, noise, JPEG, JPEG2000 × 5 levels), "
        "recognizable-adversarial (DeepFool UAP) and unrecognizable fooling groups: Fool_GD "
        "(gradient ascent from the mean image) and Fool_EV (images evolved against the victim, "
        "Nguyen et al.'s MAP-Elites with the direct encoding, not their CPPN, and far fewer "
        "generations than their thousands); over repeated grouped 50/50 splits of the "
        "clean/adversarial pairs, train the SVM and report detection rate and the victim's "
        "accuracy on images judged fit, with Baseline-1 (no gate), Baseline-2 (quality "
        "threshold) and feature squeezing. Writes table_iv.csv, table_v.csv, "
        "per_distortion.csv, runs.csv, table2_quality.csv (normalised quality per group: "
        "clean, UAP, EV, GD), table3_confidence.csv (top-1 probability per group), "
        "figure4_tsne.png (t-SNE of the 6-D gate features) and summary.json.")
    _add_generation_options(evaluate)
    add_progress_option(evaluate)
    evaluate.add_argument("--distortions", type=name_list, default=list(DISTORTIONS),
                          help="comma-separated distortion types of the distorted group "
                          f"(default: {','.join(DISTORTIONS)}); JPEG2000 refuses images as "
                          "small as Fashion-MNIST's 28×28: use blur,noise,jpeg there")
    evaluate.add_argument("--repeats", type=positive_int, default=10,
                          help="grouped 50/50 splits (default: %(default)s)")
    _add_fooling_options(evaluate)
    evaluate.add_argument("--out", type=Path, required=True, help="output folder")
    evaluate.set_defaults(handler=run_eval)


def _add_fooling_options(parser) -> None:
    parser.add_argument("--fooling", type=int, default=10,
                        help="Fool_GD (gradient ascent) fooling images to generate; 0: none "
                        "(default: %(default)s)")
    parser.add_argument("--fooling-ev", type=int, default=10,
                        help="Fool_EV (evolved) fooling images, one per distinct random "
                        "target class (seeded by --seed); 0 leaves the group out "
                        "(default: %(default)s)")
    parser.add_argument("--ev-generations", type=positive_int, default=20,
                        help="generations of the Fool_EV evolution (default: %(default)s; "
                        "Nguyen et al. ran thousands: expect low target confidence); each "
                        "costs --ev-population forward passes of the victim")
    parser.add_argument("--ev-population", type=positive_int, default=32,
                        help="children per Fool_EV generation (default: %(default)s)")


def register(subparsers) -> None:
    """Add the top-level ``advqa screen`` command."""
    parser = subparsers.add_parser(
        "screen", help="screen a folder of images with a fitted gate",
        description="Run a gate (from `advqa detect fit-gate`) on every image of FOLDER and "
        "write a CSV: path, decision (fit/unfit), reasons, the victim's prediction and every "
        "score. Unreadable images are skipped and listed in OUT's .failures.csv (exit code 0); "
        "the exit code is 1 when no image could be read, 2 when FOLDER holds none.")
    parser.add_argument("folder", type=Path, help="folder of images")
    parser.add_argument("--gate", type=Path, required=True, help="gate JSON file")
    _add_key_option(parser)
    parser.add_argument("--allow-unsigned", action="store_true",
                        help="load a gate that cannot be verified (unsigned, or no key given); "
                        "its checksums then catch corruption only, not deliberate edits")
    parser.add_argument("--out", type=Path, default=Path("decisions.csv"),
                        help="CSV to write (default: %(default)s)")
    parser.add_argument("--recursive", action="store_true", help="include sub-folders")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per batch")
    add_device_option(parser)
    parser.set_defaults(handler=run_screen)


def _job(arguments):
    from advqa.detect.distortions import DISTORTIONS
    from advqa.workflows.gate import GateJob

    weights = None if arguments.weights.lower() == "none" else arguments.weights
    threshold = arguments.quality_threshold if arguments.quality_threshold >= 0 else None
    try:
        return GateJob(
            source=arguments.source, model=arguments.model, weights=weights,
            device=arguments.device, quality=arguments.quality, quality_threshold=threshold,
            squeeze=not arguments.no_squeeze, ws=getattr(arguments, "ws", False),
            target_fpr=arguments.target_fpr, norm=arguments.norm, radius=arguments.radius,
            uap_epochs=arguments.uap_epochs, uap_images=arguments.uap_images,
            penalty=arguments.penalty, seed=arguments.seed,
            distortions=tuple(getattr(arguments, "distortions", DISTORTIONS)))
    except ValueError as error:
        raise CommandError(str(error)) from error


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
    from advqa.detect.gate import read_gate_key
    from advqa.workflows.gate import fit_gate

    job = _job(arguments)
    key = read_gate_key(arguments.key_file)  # before the long fit: a bad key fails fast
    if key is None:
        print("warning: no key (--key-file or ADVQA_GATE_KEY_FILE): the gate will be unsigned "
              "and `advqa screen` will load it only with --allow-unsigned; create a key with "
              "`advqa detect gate-key PATH`", file=sys.stderr)
    with make_engine(arguments) as executor:
        fitted = fit_gate(job, arguments.out, key=key, executor=executor,
                          progress=None if arguments.no_progress else _progress)
    print(f"wrote {fitted.json_path} and {fitted.arrays_path} "
          f"({'signed' if fitted.signed else 'UNSIGNED'}): detectors "
          f"{', '.join(fitted.detectors)}; on its training images it flags "
          f"{fitted.adversarial_flagged}/{fitted.adversarial} adversarial and "
          f"{fitted.clean_flagged}/{fitted.clean} clean (optimistic: training data)")
    return 0


def run_eval(arguments) -> int:
    from advqa.workflows.gate import evaluate_gate

    job = _job(arguments)
    with make_engine(arguments) as executor:
        written = evaluate_gate(job, arguments.out, repeats=arguments.repeats,
                                fooling=arguments.fooling, fooling_ev=arguments.fooling_ev,
                                ev_generations=arguments.ev_generations,
                                ev_population=arguments.ev_population, executor=executor,
                                progress=None if arguments.no_progress else _progress)
    for path in written:
        print(f"wrote {path}")
    return 0


def run_screen(arguments) -> int:
    from advqa.detect.gate import read_gate_key
    from advqa.workflows.gate import screen_folder

    screening = screen_folder(arguments.folder, arguments.gate, arguments.out,
                              key=read_gate_key(arguments.key_file),
                              allow_unsigned=arguments.allow_unsigned,
                              recursive=arguments.recursive, batch_size=arguments.batch_size,
                              device=arguments.device)
    print(f"wrote {screening.out}: {len(screening.rows)} image(s), {screening.unfit} unfit, "
          f"{len(screening.rows) - screening.unfit} fit")
    for name, reason in screening.failures:
        print(f"skipped unreadable image {name}: {reason}", file=sys.stderr)
    if screening.failures:
        print(f"{len(screening.failures)} image(s) could not be read: listed in "
              f"{screening.failures_path}", file=sys.stderr)
    return exit_code(len(screening.rows), len(screening.failures))
