"""``advqa train``: train the Fashion-MNIST victim classifiers that ship with advqa."""

from __future__ import annotations

from pathlib import Path

from advqa.cli.common import CommandError, add_progress_option, number
from advqa.workflows.train import MODELS


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
    add_training_options(parser)
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with the Fashion-MNIST IDX files "
                        "(default: /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--out", type=Path, default=None,
                        help="weight file to write (default: advqa/models/data/<name>.pt)")
    add_progress_option(parser)
    parser.set_defaults(handler=run)


def add_training_options(parser) -> None:
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
    add_plateau_options(parser)


def add_plateau_options(parser) -> None:
    parser.add_argument("--until-plateau", action="store_true",
                        help="adversarial training until held-out PGD accuracy stops rising "
                        "(constant rate; --epochs is then the most, default 30)")
    parser.add_argument("--patience", type=int, default=2,
                        help="with --until-plateau: epochs without a rise before stopping "
                        "(default: 2)")
    parser.add_argument("--validation", type=int, default=5000,
                        help="with --until-plateau: training images held out to monitor "
                        "(default: 5000)")
    parser.add_argument("--monitor-steps", type=int, default=40,
                        help="with --until-plateau: steps of the monitoring PGD at --eps "
                        "(default: 40)")


def run(arguments) -> int:
    from advqa.workflows.train import TrainJob, train_victim

    try:
        job = TrainJob(
            model=arguments.model, adversarial=arguments.adversarial, eps=arguments.eps,
            steps=arguments.steps, step_size=arguments.step_size, epochs=arguments.epochs,
            batch_size=arguments.batch_size, lr=arguments.lr, seed=arguments.seed,
            threads=arguments.threads, limit=arguments.limit, eval_steps=arguments.eval_steps,
            data=arguments.data, until_plateau=arguments.until_plateau,
            patience=arguments.patience, validation=arguments.validation,
            monitor_steps=arguments.monitor_steps)
    except ValueError as error:
        raise CommandError(str(error)) from error
    trained = train_victim(job, arguments.out, progress=not arguments.no_progress)
    for key, value in trained.accuracy.items():
        print(f"test accuracy {key}: {100 * value:.2f}%")
    print(f"wrote {trained.weights} ({trained.weights.stat().st_size / 1024:.0f} kB) and "
          f"{trained.sidecar}")
    return 0
