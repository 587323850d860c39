"""``advqa dtniq``: build a constructed quality set and train DTNIQ-f no-reference models."""

from __future__ import annotations

from pathlib import Path

from advqa.cli.common import add_progress_option, name_list, number


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dtniq", help="train DTNIQ-f no-reference quality models (and build a proxy set)",
        description="DTNIQ-f (a frozen classifier's features, two FC-2048 ReLU layers, "
        "a 70-class softmax): 'construct' writes distorted images (the embedded photos, or "
        "any sample set) with a full-reference (VIF, SSIM...) label table; 'train' fits "
        "the head on any MOS table, holding out whole source images, and writes a state "
        "dict and a JSON sidecar.")
    commands = parser.add_subparsers(title="steps", metavar="STEP", required=True)
    construct = commands.add_parser("construct", help="write the constructed (proxy) set")
    construct.add_argument("out_dir", type=Path, help="folder for images/ and mos.csv")
    add_construct_options(construct)
    add_progress_option(construct)
    construct.set_defaults(handler=run_construct)
    train = commands.add_parser("train", help="train a DTNIQ-f head on a MOS table")
    train.add_argument("table", type=Path, help="CSV: image, mos[, std][, source]")
    train.add_argument("--out", type=Path, required=True, help="weight file (.pt) to write")
    add_training_options(train)
    train.set_defaults(handler=run_train)


def add_construct_options(parser) -> None:
    parser.add_argument("--sets", type=name_list, default=["photos", "imagenet"],
                        help="comma-separated sample sets (default: photos,imagenet; "
                        "e.g. fashion-mnist-train)")
    parser.add_argument("--limit", type=int, default=None,
                        help="first N samples of each set (default: all)")
    parser.add_argument("--short-side", type=int, default=256,
                        help="resize to this shorter side; 0 keeps the native size and "
                        "channels, e.g. 28-px grey Fashion-MNIST (default: 256)")
    parser.add_argument("--distortions", type=name_list,
                        default=["blur", "noise", "jpeg", "jpeg2000", "contrast"],
                        help="comma-separated (default: blur,noise,jpeg,jpeg2000,contrast)")
    parser.add_argument("--label", default="vif",
                        help="full-reference metric that labels the images (default: vif)")
    parser.add_argument("--tiles", type=int, default=6,
                        help="native 256-px training tiles per photo, 0 = none (default: 6)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")


def add_training_options(parser) -> None:
    parser.add_argument("--backbone", default="efficientnet-lite0", help="advqa classifier")
    parser.add_argument("--features", choices=("multilevel", "last-linear"),
                        default="multilevel", help="backbone features (default: multilevel)")
    parser.add_argument("--grid", type=int, default=2, help="patch lattice side (default: 2)")
    parser.add_argument("--holdout", type=number, default=0.25,
                        help="fraction of source images held out (default: 0.25)")
    parser.add_argument("--epochs", type=int, default=60, help="default: 60")
    parser.add_argument("--batch-size", type=int, default=128, help="default: 128")
    parser.add_argument("--lr", type=number, default=1e-4, help="Adam rate (default: 1e-4)")
    parser.add_argument("--dropout", type=number, default=0.5, help="default: 0.5")
    parser.add_argument("--label-sigma", type=number, default=1.5,
                        help="soft-target width in classes, 0 = one-hot (default: 1.5)")
    parser.add_argument("--mos-range", type=number, nargs=2, default=None,
                        help="MOS the 70 classes span (default: the table's min, max)")
    parser.add_argument("--seed", type=int, default=0, help="default: 0")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--description", default="", help="recorded in the sidecar")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache file")
    add_progress_option(parser)


def run_construct(arguments) -> int:
    from advqa.workflows.train_nr import constructed_mos_table

    table = constructed_mos_table(
        arguments.out_dir, sets=tuple(arguments.sets), limit=arguments.limit,
        short_side=arguments.short_side or None, distortions=tuple(arguments.distortions),
        label=arguments.label, tiles=arguments.tiles, seed=arguments.seed,
        progress=not arguments.no_progress)
    print(f"wrote {table}")
    return 0


def run_train(arguments) -> int:
    from advqa.workflows.train_nr import train_nr

    options = {key: getattr(arguments, key) for key in (
        "backbone", "features", "grid", "holdout", "epochs", "batch_size", "lr", "dropout",
        "label_sigma", "seed", "threads", "description", "cache")}
    mos_range = tuple(arguments.mos_range) if arguments.mos_range else None
    trained = train_nr(arguments.table, arguments.out, mos_range=mos_range,
                       progress=not arguments.no_progress, **options)
    print(f"held-out SROCC {trained.heldout['srocc']:.4f}, PLCC {trained.heldout['plcc']:.4f} "
          f"on {trained.heldout['images']} images")
    print(f"wrote {trained.weights} ({trained.weights.stat().st_size / 1e6:.1f} MB) and "
          f"{trained.sidecar}")
    return 0
