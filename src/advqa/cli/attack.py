"""``advqa attack``: attack every image of a folder, write the AEs to another."""

from __future__ import annotations

from pathlib import Path

from advqa.cli.common import (
    CommandError,
    add_model_options,
    add_progress_option,
    exit_code,
    load_model,
    number,
    positive_int,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "attack", help="attack a folder of images (folder in, folder out)",
        description="Attack every image in INPUT with one attack and write the AEs, as "
        "lossless PNGs named after the inputs, to OUTPUT, with results.{csv,parquet}. "
        "Images are resized and centre-cropped to the model's input first; those "
        "references are written to OUTPUT/references/, so `advqa score "
        "OUTPUT/references/X.png OUTPUT/X.png` scores an AE against what it was made from. "
        "Unreadable images are skipped and listed in OUTPUT/failures.csv.")
    parser.add_argument("input", type=Path, help="folder of PNG/JPEG/BMP/TIFF images")
    parser.add_argument("output", type=Path, help="folder for the adversarial examples")
    parser.add_argument("--attack", default="pgd", help="fgsm, bim, pgd, mim, deepfool or cw")
    parser.add_argument("--norm", default=None, help="linf, l2, l1 or l0 (attack's default)")
    parser.add_argument("--eps", type=number, default=None, help="budget, e.g. 4/255")
    parser.add_argument("--steps", type=positive_int, default=None)
    parser.add_argument("--step-size", type=number, default=None)
    parser.add_argument("--overshoot", type=number, default=None, help="DeepFool overshoot")
    parser.add_argument("--kappa", type=number, default=None, help="C&W confidence")
    parser.add_argument("--budget", default=None,
                        help="perceptual budget inside the Lp one, e.g. \"advdss>=0.99\"")
    parser.add_argument("--labels", type=Path, default=None,
                        help="CSV with filename,label; images without one use the clean prediction")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    add_model_options(parser)
    add_progress_option(parser)
    parser.set_defaults(handler=run)


def attack_parameters(arguments) -> dict:
    names = {"norm": arguments.norm, "eps": arguments.eps, "steps": arguments.steps,
             "step_size": arguments.step_size, "overshoot": arguments.overshoot,
             "kappa": arguments.kappa, "budget": arguments.budget}
    return {key: value for key, value in names.items() if value is not None}


def run(arguments) -> int:
    from advqa.attacks import get_attack
    from advqa.data import load_folder
    from advqa.workflows.attack import attack_folder

    if not arguments.input.is_dir():
        raise CommandError(f"input folder {arguments.input} does not exist")
    attack = get_attack(arguments.attack, seed=arguments.seed, **attack_parameters(arguments))
    model = load_model(arguments)
    samples = load_folder(arguments.input, labels=arguments.labels,
                          num_classes=model.info.num_classes)
    if len(samples) == 0 and not samples.failures:
        raise CommandError(f"no images in {arguments.input}")
    summary = attack_folder(attack, model, samples, arguments.output,
                            batch_size=arguments.batch_size,
                            progress=not arguments.no_progress)
    if summary.budget:
        print(summary.budget)
    print(f"{summary.fooled}/{summary.attacked} images fooled, {len(summary.failures)} "
          f"unreadable (listed in {summary.failures_path}); wrote {summary.output}")
    return exit_code(summary.attacked, len(summary.failures))
