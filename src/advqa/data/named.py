"""Named sample sets that ship with installed packages and load without a network."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import types
import warnings
from collections.abc import Callable

from advqa.data.idx import idx_samples
from advqa.data.io import ImageReadError, read_image
from advqa.data.samples import ImageLoadWarning, LoadFailure, Sample, SampleSet

__all__ = [
    "FASHION_MNIST_DIRECTORY",
    "UnknownSampleSetError",
    "list_sample_sets",
    "load_samples",
]

#: Where the Debian/Ubuntu package ``dataset-fashion-mnist`` installs its files.
FASHION_MNIST_DIRECTORY = pathlib.Path("/usr/share/datasets/fashion-mnist")

# (package, file name). Only colour photos inside the installed wheels: skimage's
# other images need pooch downloads.
_PHOTOS = (
    ("skimage", "astronaut.png"),
    ("skimage", "coffee.png"),
    ("skimage", "chelsea.png"),
    ("skimage", "rocket.jpg"),
    ("skimage", "hubble_deep_field.jpg"),
    ("skimage", "retina.jpg"),
    ("skimage", "ihc.png"),
    ("skimage", "motorcycle_left.png"),
    ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"),
    ("matplotlib", "grace_hopper.jpg"),
)


class UnknownSampleSetError(KeyError, ValueError):
    """Raised for a sample set name that does not exist; both a KeyError and a ValueError."""

    def __str__(self) -> str:
        # KeyError would otherwise show the message in quotes.
        return str(self.args[0]) if self.args else ""


def list_sample_sets() -> list[str]:
    """Names accepted by :func:`load_samples`, sorted."""
    return sorted(_LOADERS)


def load_samples(name: str) -> SampleSet:
    """Load a named offline sample set.

    Parameters
    ----------
    name : str
        One of :func:`list_sample_sets`:

        ``"imagenet"``
            The 20 ImageNet validation photos shipped with foolbox, labelled with
            0-based ImageNet-1k indices; names such as ``"imagenet_00_243"``.
        ``"photos"``
            11 unlabelled colour photos bundled with scikit-image, scikit-learn
            (china, flower) and matplotlib (grace_hopper).
        ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``
            The 20 labelled samples of each shipped with foolbox; the first two
            are one-channel.
        ``"fashion-mnist-full"``
            All 70,000 Fashion-MNIST images (train then test) from the Debian
            package ``dataset-fashion-mnist``; names ``train_00000`` ...
            ``test_9999``.
        ``"fashion-mnist-train"``, ``"fashion-mnist-test"``
            Its 60,000 training or 10,000 test images alone (same names): the
            test split is what experiments at scale evaluate on.

    Returns
    -------
    SampleSet
        Samples whose ``source`` is ``name``.

    Raises
    ------
    UnknownSampleSetError
        If ``name`` is unknown; the message lists the valid names.
    FileNotFoundError
        If the files of ``fashion-mnist-full`` are not installed.
    ModuleNotFoundError
        If the package that ships a set is not installed.
    """
    try:
        loader = _LOADERS[name]
    except (KeyError, TypeError):
        raise UnknownSampleSetError(
            f"unknown sample set {name!r}; valid names: {', '.join(list_sample_sets())}"
        ) from None
    return loader(name)


def _package_directory(package: str) -> pathlib.Path:
    # find_spec locates the package without importing it (foolbox takes ~0.5 s).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is needed for this sample set")
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def _foolbox_loader(prefix: str, *, suffix: str, mode: str) -> Callable[[str], SampleSet]:
    pattern = re.compile(rf"{re.escape(prefix)}_\d+_(\d+)")

    def load(name: str) -> SampleSet:
        directory = _package_directory("foolbox") / "data"
        paths = sorted(
            path for path in directory.glob(f"{prefix}_*{suffix}") if pattern.fullmatch(path.stem)
        )
        if not paths:
            raise FileNotFoundError(f"no {prefix}_*{suffix} files in {directory}")
        labelled = [(path, int(pattern.fullmatch(path.stem)[1])) for path in paths]
        return _load_files(labelled, source=name, mode=mode)

    return load


def _load_photos(name: str) -> SampleSet:
    labelled, failures = [], []
    for package, file_name in _PHOTOS:
        try:
            labelled.append((_photo_directory(package) / file_name, None))
        except ModuleNotFoundError as error:
            failures.append(LoadFailure(f"{package}:{file_name}", str(error)))
    return _load_files(labelled, source=name, mode="rgb", failures=failures)


def _photo_directory(package: str) -> pathlib.Path:
    if package == "matplotlib":
        # Distributions may move mpl-data out of the package; matplotlib knows where.
        import matplotlib

        return pathlib.Path(matplotlib.get_data_path()) / "sample_data"
    # Same files as skimage.data and sklearn.datasets.load_sample_image read, found
    # without importing sklearn.datasets, which takes about a second.
    inner = {"skimage": "data", "sklearn": "datasets/images"}[package]
    return _package_directory(package) / inner


def _load_fashion_mnist_full(name: str) -> SampleSet:
    split = {"fashion-mnist-train": "train", "fashion-mnist-test": "test"}.get(name, "all")
    if not FASHION_MNIST_DIRECTORY.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {FASHION_MNIST_DIRECTORY}: run "
            "'apt-get install dataset-fashion-mnist', or pass a folder of IDX files "
            "to advqa.data.load_idx / idx_samples"
        )
    return idx_samples(FASHION_MNIST_DIRECTORY, split=split, source=name)


def _load_files(
    labelled: list[tuple[pathlib.Path, int | None]],
    *,
    source: str,
    mode: str,
    failures: list[LoadFailure] | None = None,
) -> SampleSet:
    samples, failures = [], list(failures or [])
    for path, label in labelled:
        try:
            image = read_image(path, mode=mode)
        except ImageReadError as error:
            failures.append(LoadFailure(str(path), error.reason))
            continue
        except OSError as error:
            failures.append(LoadFailure(str(path), error.strerror or str(error)))
            continue
        samples.append(Sample(image=image, label=label, name=path.stem, source=source, path=path))
    for failure in failures:
        # stacklevel 4 points at the caller of load_samples.
        warnings.warn(f"skipped {failure.path}: {failure.reason}", ImageLoadWarning, stacklevel=4)
    return SampleSet(samples, failures)


_LOADERS: types.MappingProxyType[str, Callable[[str], SampleSet]] = types.MappingProxyType(
    {
        "imagenet": _foolbox_loader("imagenet", suffix=".jpg", mode="rgb"),
        "photos": _load_photos,
        "mnist": _foolbox_loader("mnist", suffix=".png", mode="keep"),
        "fashion-mnist": _foolbox_loader("fashionMNIST", suffix=".png", mode="keep"),
        "cifar10": _foolbox_loader("cifar10", suffix=".png", mode="keep"),
        "fashion-mnist-full": _load_fashion_mnist_full,
        "fashion-mnist-train": _load_fashion_mnist_full,
        "fashion-mnist-test": _load_fashion_mnist_full,
    }
)
