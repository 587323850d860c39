"""``advqa train``: train the Fashion-MNIST victim classifiers that ship with advqa."""

from __future__ import annotations

import io
import json
import shlex
from datetime import UTC, datetime
from pathlib import Path

from advqa.cli.common import CommandError, number

MODELS = ("fashion-mnist-cnn", "fashion-mnist-cnn-adv")
DEFAULT_EPOCHS = {False: 3, True: 1}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a Fashion-MNIST classifier (natural or PGD adversarial)",
        description="Train the small Fashion-MNIST CNN on the 60,000 training images, "
        "naturally or with Madry-style PGD adversarial training (L∞, random start), "
        "measure clean and PGD accuracy on the 10,000 test images, and write the state "
        "dict (OUT, default: the package's advqa/models/data/<name>.pt) and a JSON "
        "sidecar OUT with .json recording the exact command, settings, time and accuracies. "
        "Same seed and thread count give identical weights.")
    parser.add_argument("model", choices=MODELS,
                        help="network to train; fashion-mnist-cnn-adv implies --adversarial")
    parser.add_argument("--adversarial", action="store_true",
                        help="PGD adversarial training (Madry et al. 2018)")
    parser.add_argument("--eps", type=number, default=0.1,
                        help="L∞ budget of training PGD, in [0, 1] pixel units (default: 0.1)")
    parser.add_argument("--steps", type=int, default=None,
                        help="PGD steps per training batch (default: 5)")
    parser.add_argument("--step-size", type=number, default=None,
                        help="PGD step size (default: 2.5·eps/steps)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the training set (default: 3 natural, 1 adversarial)")
    parser.add_argument("--batch-size", type=int, default=128, help="default: 128")
    parser.add_argument("--lr", type=number, default=1e-3,
                        help="Adam learning rate, cosine-annealed to 0 (default: 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation, shuffling and "
                        "PGD random starts (default: 0)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch CPU threads (default: 2); part of what makes a run "
                        "reproducible")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on the first N training images only (quick runs)")
    parser.add_argument("--eval-steps", type=int, default=10,
                        help="steps of the test-set PGD (ε=0.1 and the training ε; default: 10)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with the Fashion-MNIST IDX files "
                        "(default: /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--out", type=Path, default=None,
                        help="weight file to write (default: advqa/models/data/<name>.pt)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def command_line(arguments, adversarial: bool, epochs: int, steps: int | None,
                 step_size: float | None, out: Path) -> str:
    """The fully explicit command that reproduces this run."""
    parts = ["advqa", "train", "fashion-mnist-cnn"]
    if adversarial:
        parts += ["--adversarial", "--eps", repr(arguments.eps), "--steps", str(steps),
                  "--step-size", repr(step_size)]
    parts += ["--epochs", str(epochs), "--batch-size", str(arguments.batch_size),
              "--lr", repr(arguments.lr), "--seed", str(arguments.seed),
              "--threads", str(arguments.threads), "--eval-steps", str(arguments.eval_steps)]
    if arguments.limit is not None:
        parts += ["--limit", str(arguments.limit)]
    if arguments.data is not None:
        parts += ["--data", str(arguments.data)]
    if arguments.out is not None:
        parts += ["--out", str(out)]
    return shlex.join(parts)


def run(arguments) -> int:
    import torch

    from advqa.data import FASHION_MNIST_DIRECTORY, atomic_write_bytes, load_idx
    from advqa.models import fashion_mnist
    from advqa.models.training import (
        DEFAULT_ADVERSARIAL,
        adversarial_settings,
        evaluate_accuracy,
        pgd_attack,
        train_classifier,
    )

    adversarial = arguments.adversarial or arguments.model == fashion_mnist.ADVERSARIAL_NAME
    epochs = DEFAULT_EPOCHS[adversarial] if arguments.epochs is None else arguments.epochs
    for option, value in (("--epochs", epochs), ("--batch-size", arguments.batch_size),
                          ("--threads", arguments.threads), ("--eval-steps", arguments.eval_steps)):
        if value < 1:
            raise CommandError(f"{option} must be at least 1")
    if arguments.limit is not None and arguments.limit < 1:
        raise CommandError("--limit must be at least 1")
    if not 0 < arguments.eps <= 1:
        raise CommandError("--eps must lie in (0, 1]")
    if not arguments.lr > 0:
        raise CommandError("--lr must be positive")
    settings = None
    if adversarial:
        steps = DEFAULT_ADVERSARIAL["steps"] if arguments.steps is None else arguments.steps
        if steps < 1:
            raise CommandError("--steps must be at least 1")
        if arguments.step_size is not None and not arguments.step_size > 0:
            raise CommandError("--step-size must be positive")
        settings = adversarial_settings(
            {"eps": arguments.eps, "steps": steps, "step_size": arguments.step_size})
    elif arguments.steps is not None or arguments.step_size is not None:
        raise CommandError("--steps and --step-size need --adversarial")

    directory = FASHION_MNIST_DIRECTORY if arguments.data is None else arguments.data
    if not directory.is_dir():
        raise CommandError(f"Fashion-MNIST not found in {directory}: run "
                           "'apt-get install dataset-fashion-mnist' or pass --data DIR")
    out = arguments.out or fashion_mnist.weights_path(adversarial)
    torch.set_num_threads(arguments.threads)
    images, labels = load_idx(directory, split="train")
    test_images, test_labels = load_idx(directory, split="test")
    if arguments.limit is not None:
        images, labels = images[:arguments.limit], labels[:arguments.limit]

    name = fashion_mnist.model_name(adversarial)
    model = fashion_mnist.classifier(fashion_mnist.make_network(arguments.seed),
                                     adversarial=adversarial)
    progress = not arguments.quiet
    print(f"training {name} on {len(images)} images for {epochs} epochs"
          + (f", PGD ε={settings['eps']:g}, {settings['steps']} steps of "
             f"{settings['step_size']:.4g}" if settings else ""))
    history = train_classifier(model, images, labels, epochs=epochs,
                               batch_size=arguments.batch_size, lr=arguments.lr,
                               seed=arguments.seed, adversarial=settings, progress=progress)
    print(f"trained in {history['seconds']:.0f} s; evaluating on {len(test_images)} test images")

    accuracy = {"clean": evaluate_accuracy(model, test_images, test_labels)}
    evaluation_eps = sorted({0.1, *([settings["eps"]] if settings else [])})
    for eps in evaluation_eps:
        attack = pgd_attack(eps, arguments.eval_steps, seed=arguments.seed)
        accuracy[f"pgd_eps{eps:g}"] = evaluate_accuracy(
            model, test_images, test_labels, attack=attack, progress=progress)
    for key, value in accuracy.items():
        print(f"test accuracy {key}: {100 * value:.2f}%")

    state = {key: value.detach().cpu().contiguous()
             for key, value in model.network.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(out, buffer.getvalue())
    record = {
        "name": name,
        "command": command_line(arguments, adversarial, epochs,
                                settings and settings["steps"],
                                settings and settings["step_size"], out),
        "architecture": "conv3x3x16-relu-maxpool2-conv3x3x32-relu-maxpool2-fc128-relu-fc10; "
                        f"input 1x28x28 in [0,1], normalised by mean {fashion_mnist.MEAN[0]} "
                        f"std {fashion_mnist.STD[0]} inside the classifier",
        "parameters": sum(value.numel() for value in state.values()),
        "seed": arguments.seed,
        "epochs": epochs,
        "batch_size": arguments.batch_size,
        "optimizer": f"Adam lr {arguments.lr:g}, cosine annealing to 0 per step",
        "training": "pgd-adversarial (Madry et al. 2018: every batch replaced by its "
                    "L-inf PGD AEs, random start)" if settings else "natural",
        "adversarial": settings,
        "train_images": len(images),
        "train_seconds": round(history["seconds"], 1),
        "train_loss": [round(value, 5) for value in history["loss"]],
        "train_accuracy": [round(value, 5) for value in history["train_accuracy"]],
        "test_images": len(test_images),
        "test_accuracy": {key: round(value, 5) for key, value in accuracy.items()},
        "test_attack": {f"pgd_eps{eps:g}": pgd_attack(eps, arguments.eval_steps,
                                                       seed=arguments.seed).parameters()
                        for eps in evaluation_eps},
        "threads": arguments.threads,
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    sidecar = fashion_mnist.sidecar_path(out)
    atomic_write_bytes(sidecar, (json.dumps(record, indent=2) + "\n").encode())
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} kB) and {sidecar}")
    return 0
