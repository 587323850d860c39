"""One entry point for every kind of image source: :func:`load_source`."""

from __future__ import annotations

import os
import pathlib

from advqa.data.folder import find_images, is_nips2017_layout, load_folder, load_nips2017
from advqa.data.idx import idx_samples, idx_splits
from advqa.data.named import list_sample_sets, load_samples
from advqa.data.samples import SampleSet

__all__ = ["load_source"]


def load_source(spec: str | os.PathLike) -> SampleSet:
    """Load a named sample set, an image folder or a folder of IDX files.

    Parameters
    ----------
    spec : str or os.PathLike
        Checked in this order:

        1. a name from :func:`advqa.data.list_sample_sets`;
        2. a folder holding MNIST-style IDX files (both splits are loaded, train
           first, when both are present; see :func:`advqa.data.idx_samples`);
        3. a folder in the NIPS 2017 layout (:func:`advqa.data.load_nips2017`);
        4. a folder with images directly inside it (:func:`advqa.data.load_folder`).

    Returns
    -------
    SampleSet

    Raises
    ------
    ValueError
        If ``spec`` matches none of these; the message lists the valid names.
    """
    if isinstance(spec, str) and spec in list_sample_sets():
        return load_samples(spec)
    path = pathlib.Path(spec)
    if not path.is_dir():
        kind = "a file, not a folder" if path.exists() else "not an existing folder"
        raise ValueError(
            f"cannot load {str(spec)!r}: it is {kind} and not a sample set name "
            f"({', '.join(list_sample_sets())})"
        )
    splits = idx_splits(path)
    if splits:
        split = splits[0] if len(splits) == 1 else "all"
        return idx_samples(path, split=split)
    if is_nips2017_layout(path):
        return load_nips2017(path)
    if not find_images(path):
        raise ValueError(
            f"cannot load {str(spec)!r}: the folder holds no images (.png, .jpg, .jpeg, .bmp, "
            ".tif, .tiff), no IDX files and no NIPS 2017 images/ + images.csv"
        )
    return load_folder(path)
