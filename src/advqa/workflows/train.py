"""Training a victim: the Fashion-MNIST CNNs that ship with advqa (``advqa train``)."""

from __future__ import annotations

import io
import json
import math
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MODELS = ("fashion-mnist-cnn", "fashion-mnist-cnn-adv")
DEFAULT_EPOCHS = {False: 3, True: 1}
#: The most epochs a run with ``until_plateau`` may take when ``epochs`` is not given.
PLATEAU_MAX_EPOCHS = 30


@dataclass(frozen=True)
class TrainJob:
    """One training run; defaults are those of the shipped weights.

    ``adversarial`` is PGD adversarial training (Madry et al. 2018) with L∞ budget
    ``eps`` and ``steps`` steps of ``step_size`` (default 5 steps of 2.5·eps/steps);
    ``epochs`` defaults to 3 natural, 1 adversarial; ``limit`` trains on the first N
    training images; ``eval_steps`` is the test-set PGD's; ``threads`` is part of what
    makes a run reproducible; ``data`` is the folder of Fashion-MNIST IDX files.

    ``until_plateau`` trains until robustness stops rising (for the adversarial model):
    the last ``validation`` training images are held out, and after every epoch their
    accuracy under PGD-``monitor_steps`` at ``eps`` is measured; the run stops when it
    has not risen for ``patience`` epochs (at most ``epochs``, default
    :data:`PLATEAU_MAX_EPOCHS`), keeps the best epoch's weights, and uses a constant
    learning rate (Madry et al.'s; a cosine schedule would tie the rate to a length the
    run does not know).

    Raises
    ------
    ValueError
        For any setting no run could use (checked here, before the data is read).
    """

    model: str = "fashion-mnist-cnn"
    adversarial: bool = False
    eps: float = 0.1
    steps: int | None = None
    step_size: float | None = None
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    threads: int = 2
    limit: int | None = None
    eval_steps: int = 10
    data: Path | None = None
    until_plateau: bool = False
    patience: int = 2
    validation: int = 5000
    monitor_steps: int = 40

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid: {', '.join(MODELS)}")
        for name in ("batch_size", "threads", "eval_steps", "epochs", "limit", "steps",
                     "patience", "validation", "monitor_steps"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must lie in (0, 1], got {self.eps}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.step_size is not None and not (math.isfinite(self.step_size)
                                               and self.step_size > 0):
            raise ValueError(f"step_size must be a finite number > 0, got {self.step_size}")
        if not self.is_adversarial and (self.steps is not None or self.step_size is not None):
            raise ValueError("steps and step_size are PGD's: they need adversarial training")
        if self.until_plateau and not self.is_adversarial:
            raise ValueError("until_plateau monitors PGD accuracy: it needs adversarial "
                             "training")

    @property
    def is_adversarial(self) -> bool:
        return self.adversarial or self.model == "fashion-mnist-cnn-adv"

    @property
    def epoch_count(self) -> int:
        """Epochs to train (the most epochs, with ``until_plateau``)."""
        if self.epochs is not None:
            return self.epochs
        return PLATEAU_MAX_EPOCHS if self.until_plateau else DEFAULT_EPOCHS[self.is_adversarial]


@dataclass
class TrainedVictim:
    """What :func:`train_victim` wrote and measured."""

    name: str
    weights: Path
    sidecar: Path
    accuracy: dict[str, float]
    seconds: float


class PlateauMonitor:
    """After each epoch: PGD accuracy on held-out training images; stop when it has not
    risen for ``patience`` epochs, remembering the best epoch's weights."""

    def __init__(self, model, images, labels, attack, *, patience: int, progress: bool,
                 say=print):
        self.model, self.images, self.labels, self.attack = model, images, labels, attack
        self.patience, self.progress, self.say = patience, progress, say
        self.accuracy: list[float] = []
        self.best_state = None
        self.seconds = 0.0

    @property
    def best_epoch(self) -> int:
        return max(range(len(self.accuracy)), key=lambda index: (self.accuracy[index], -index))

    def __call__(self, epoch: int) -> bool:
        import time

        from advqa.models.training import evaluate_accuracy

        started = time.perf_counter()
        value = evaluate_accuracy(self.model, self.images, self.labels, attack=self.attack,
                                  progress=self.progress)
        self.seconds += time.perf_counter() - started
        self.accuracy.append(value)
        if self.best_epoch == epoch:
            self.best_state = {key: tensor.detach().clone()
                               for key, tensor in self.model.network.state_dict().items()}
        self.say(f"epoch {epoch + 1}: held-out PGD-{self.attack.parameters()['steps']} accuracy "
                 f"{100 * value:.2f}% (best {100 * self.accuracy[self.best_epoch]:.2f}%, "
                 f"epoch {self.best_epoch + 1})")
        return epoch - self.best_epoch >= self.patience

    def restore_best(self) -> None:
        self.model.network.load_state_dict(self.best_state)

    def record(self) -> dict:
        return {"validation_images": len(self.labels), "monitor": self.attack.parameters(),
                "patience": self.patience, "epochs_run": len(self.accuracy),
                "best_epoch": self.best_epoch + 1, "monitor_seconds": round(self.seconds, 1),
                "validation_pgd_accuracy": [round(value, 5) for value in self.accuracy]}


def command_line(job: TrainJob, settings: dict | None, out: Path, explicit_out: bool) -> str:
    """The fully explicit command that reproduces this run."""
    parts = ["advqa", "train", "fashion-mnist-cnn"]
    if settings:
        parts += ["--adversarial", "--eps", repr(job.eps), "--steps", str(settings["steps"]),
                  "--step-size", repr(settings["step_size"])]
    parts += ["--epochs", str(job.epoch_count), "--batch-size", str(job.batch_size),
              "--lr", repr(job.lr), "--seed", str(job.seed), "--threads", str(job.threads),
              "--eval-steps", str(job.eval_steps)]
    if job.until_plateau:
        parts += ["--until-plateau", "--patience", str(job.patience), "--validation",
                  str(job.validation), "--monitor-steps", str(job.monitor_steps)]
    if job.limit is not None:
        parts += ["--limit", str(job.limit)]
    if job.data is not None:
        parts += ["--data", str(job.data)]
    if explicit_out:
        parts += ["--out", str(out)]
    return shlex.join(parts)


def train_victim(job: TrainJob, out: str | Path | None = None, *, progress: bool = True,
                 say=print) -> TrainedVictim:
    """Train, evaluate on the test set (clean and PGD), and write the state dict ``out``
    (default: the package's ``advqa/models/data/<name>.pt``) with a JSON sidecar
    recording the exact command, settings, time and accuracies. The same job and
    thread count give identical weights."""
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

    adversarial = job.is_adversarial
    settings = adversarial_settings({
        "eps": job.eps, "steps": DEFAULT_ADVERSARIAL["steps"] if job.steps is None
        else job.steps, "step_size": job.step_size}) if adversarial else None
    directory = FASHION_MNIST_DIRECTORY if job.data is None else Path(job.data)
    if not directory.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST not found in {directory}: run "
                                "'apt-get install dataset-fashion-mnist' or pass --data DIR")
    target = Path(out) if out is not None else fashion_mnist.weights_path(adversarial)
    torch.set_num_threads(job.threads)
    images, labels = load_idx(directory, split="train")
    test_images, test_labels = load_idx(directory, split="test")
    if job.limit is not None:
        images, labels = images[:job.limit], labels[:job.limit]
    name = fashion_mnist.model_name(adversarial)
    model = fashion_mnist.classifier(fashion_mnist.make_network(job.seed),
                                     adversarial=adversarial)
    monitor = None
    if job.until_plateau:
        if job.validation >= len(images):
            raise ValueError(f"validation ({job.validation}) must be smaller than the "
                             f"{len(images)} training images")
        monitor = PlateauMonitor(model, images[-job.validation:], labels[-job.validation:],
                                 pgd_attack(job.eps, job.monitor_steps, seed=job.seed),
                                 patience=job.patience, progress=progress, say=say)
        images, labels = images[:-job.validation], labels[:-job.validation]
    say(f"training {name} on {len(images)} images for "
        f"{'at most ' if monitor else ''}{job.epoch_count} epochs"
        + (f", PGD ε={settings['eps']:g}, {settings['steps']} steps of "
           f"{settings['step_size']:.4g}" if settings else ""))
    history = train_classifier(model, images, labels, epochs=job.epoch_count,
                               batch_size=job.batch_size, lr=job.lr, seed=job.seed,
                               adversarial=settings, progress=progress,
                               schedule="constant" if monitor else "cosine",
                               after_epoch=monitor)
    if monitor is not None:
        monitor.restore_best()
    say(f"trained in {history['seconds']:.0f} s; evaluating on {len(test_images)} test images")
    accuracy = {"clean": evaluate_accuracy(model, test_images, test_labels)}
    evaluation_eps = sorted({0.1, *([settings["eps"]] if settings else [])})
    attacks = {f"pgd_eps{eps:g}": pgd_attack(eps, job.eval_steps, seed=job.seed)
               for eps in evaluation_eps}
    for key, attack in attacks.items():
        accuracy[key] = evaluate_accuracy(model, test_images, test_labels, attack=attack,
                                          progress=progress)
    state = {key: value.detach().cpu().contiguous()
             for key, value in model.network.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(target, buffer.getvalue())
    record = {
        "name": name, "command": command_line(job, settings, target, out is not None),
        "architecture": "conv3x3x16-relu-maxpool2-conv3x3x32-relu-maxpool2-fc128-relu-fc10; "
                        f"input 1x28x28 in [0,1], normalised by mean {fashion_mnist.MEAN[0]} "
                        f"std {fashion_mnist.STD[0]} inside the classifier",
        "parameters": sum(value.numel() for value in state.values()),
        "seed": job.seed, "epochs": history["epochs"], "batch_size": job.batch_size,
        "optimizer": f"Adam lr {job.lr:g}, "
                     + ("constant" if monitor else "cosine annealing to 0 per step"),
        "training": "pgd-adversarial (Madry et al. 2018: every batch replaced by its "
                    "L-inf PGD AEs, random start)" if settings else "natural",
        "adversarial": settings, "train_images": len(images),
        "train_seconds": round(history["seconds"], 1),  # with monitoring, if any
        "train_loss": [round(value, 5) for value in history["loss"]],
        "train_accuracy": [round(value, 5) for value in history["train_accuracy"]],
        **({"plateau": monitor.record()} if monitor is not None else {}),
        "test_images": len(test_images),
        "test_accuracy": {key: round(value, 5) for key, value in accuracy.items()},
        "test_attack": {key: attack.parameters() for key, attack in attacks.items()},
        "threads": job.threads, "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    sidecar = fashion_mnist.sidecar_path(target)
    atomic_write_bytes(sidecar, (json.dumps(record, indent=2) + "\n").encode())
    return TrainedVictim(name, target, sidecar, accuracy, history["seconds"])
