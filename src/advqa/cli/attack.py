"""``advqa attack``: attack every image of a folder, write the AEs to another."""

from __future__ import annotations

from pathlib import Path

from advqa.cli.common import CommandError, add_model_options, load_model, number


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "attack", help="attack a folder of images (folder in, folder out)",
        description="Attack every image in INPUT with one attack and write the AEs, as "
        "lossless PNGs named after the inputs, to OUTPUT, with results.{csv,parquet}. "
        "Images are resized and centre-cropped to the model's input first.")
    parser.add_argument("input", type=Path, help="folder of PNG/JPEG/BMP/TIFF images")
    parser.add_argument("output", type=Path, help="folder for the adversarial examples")
    parser.add_argument("--attack", default="pgd", help="fgsm, bim, pgd, mim, deepfool or cw")
    parser.add_argument("--norm", default=None, help="linf, l2, l1 or l0 (attack's default)")
    parser.add_argument("--eps", type=number, default=None, help="budget, e.g. 4/255")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--step-size", type=number, default=None)
    parser.add_argument("--overshoot", type=number, default=None, help="DeepFool overshoot")
    parser.add_argument("--kappa", type=number, default=None, help="C&W confidence")
    parser.add_argument("--labels", type=Path, default=None,
                        help="CSV with filename,label; images without one use the clean prediction")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    add_model_options(parser)
    parser.set_defaults(handler=run)


def attack_parameters(arguments) -> dict:
    names = {"norm": arguments.norm, "eps": arguments.eps, "steps": arguments.steps,
             "step_size": arguments.step_size, "overshoot": arguments.overshoot,
             "kappa": arguments.kappa}
    return {key: value for key, value in names.items() if value is not None}


def run(arguments) -> int:
    from advqa.attacks import get_attack
    from advqa.data import load_folder

    if not arguments.input.is_dir():
        raise CommandError(f"input folder {arguments.input} does not exist")
    attack = get_attack(arguments.attack, seed=arguments.seed, **attack_parameters(arguments))
    model = load_model(arguments)
    samples = load_folder(arguments.input, labels=arguments.labels)
    if len(samples) == 0:
        raise CommandError(f"no readable images in {arguments.input}")
    return attack_folder(attack, model, samples, arguments.output, arguments.batch_size)


def attack_folder(attack, model, samples, output: Path, batch_size: int) -> int:
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from advqa.data import encode_png, preprocess, quantize
    from advqa.study.build import attack_quantised, fooled
    from advqa.study.store import atomic_write_bytes, write_table

    records = []
    for start in tqdm(range(0, len(samples), batch_size), desc=attack.name, unit="batch"):
        batch = samples[start:start + batch_size]
        images = preprocess(batch, size=model.info.input_size, resize=model.info.resize_size)
        images = quantize(images).to(model.device)
        with torch.no_grad():
            clean = model(images).argmax(1)
        labels = torch.tensor([p if s.label is None else s.label
                               for s, p in zip(batch, clean.tolist(), strict=True)],
                              device=model.device)
        adversarial, predicted, measured, steps = attack_quantised(attack, model, images, labels)
        for index, sample in enumerate(batch):
            atomic_write_bytes(output / f"{sample.name}.png", encode_png(adversarial[index].cpu()))
            records.append({
                "image": sample.name, "label": sample.label, "clean_prediction": int(clean[index]),
                "adversarial_prediction": int(predicted[index]),
                "success": fooled(int(clean[index]), int(predicted[index]), int(labels[index])),
                "steps": int(steps[index]),
                **{name: float(values[index]) for name, values in measured.items()}})
    write_table(pd.DataFrame(records), output / "results")
    failures = [{"path": f.path, "reason": f.reason} for f in samples.failures]
    failure_table = pd.DataFrame(failures, columns=["path", "reason"])
    atomic_write_bytes(output / "failures.csv", failure_table.to_csv(index=False).encode())
    fooled = sum(record["success"] for record in records)
    print(f"{fooled}/{len(records)} images fooled, {len(failures)} unreadable; wrote {output}")
    return 0
