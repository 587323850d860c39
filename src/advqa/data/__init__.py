"""Images for adversarial-quality experiments, as float tensors in ``[0, 1]``.

Every loader returns a :class:`SampleSet` of :class:`Sample` objects giving
float32 ``(C, H, W)`` RGB (or one-channel grayscale) images at native size, with
0-based integer labels where the source has them. Folder loaders keep only each
file's path and header and decode when the image is used. Files that cannot be
read are skipped with an :class:`ImageLoadWarning` and listed in
``SampleSet.failures``; images above a pixel limit (80 megapixels, or
``$ADVQA_MAX_IMAGE_PIXELS``) are refused before decoding.

Sources
-------
load_samples, list_sample_sets
    Named sets that ship with installed packages (no network needed).
load_folder, load_nips2017
    Image folders, with an optional labels CSV, and the NIPS 2017 layout.
load_idx, idx_samples
    MNIST-style IDX files.
load_source
    Any of the above from one string.

Images
------
read_image, read_image_header, save_png, quantize
    Decoding, header checks, atomic lossless writing and the 8-bit grid PNG
    files store.
resize_center_crop, preprocess, preprocess_batch
    Classifier-ready square batches; ``preprocess_batch`` skips files whose
    pixels fail to decode.

Video
-----
read_video, load_videos, vimeo_triplets
    Clips as float ``(T, 3, H, W)`` tensors from Y4M files, other video files
    (through PyAV), frame folders and Vimeo-90k triplet trees; see
    :mod:`advqa.data.video` for the Y4M colour conventions.
"""

from advqa.data.folder import find_images, is_nips2017_layout, load_folder, load_nips2017
from advqa.data.idx import (
    IdxFormatError,
    find_idx_files,
    idx_samples,
    idx_splits,
    load_idx,
    read_idx,
)
from advqa.data.io import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS_VARIABLE,
    ImageHeader,
    ImageReadError,
    atomic_write_bytes,
    codec_roundtrip,
    encode_png,
    max_image_pixels,
    quantize,
    read_image,
    read_image_header,
    remove_stale_temporaries,
    save_png,
)
from advqa.data.named import (
    FASHION_MNIST_DIRECTORY,
    UnknownSampleSetError,
    list_sample_sets,
    load_samples,
)
from advqa.data.samples import ImageLoadWarning, LoadFailure, Sample, SampleSet
from advqa.data.sources import load_source
from advqa.data.transforms import (
    PreparedBatch,
    SmallImageWarning,
    preprocess,
    preprocess_batch,
    resize_center_crop,
)
from advqa.data.video import (
    VIDEO_SUFFIXES,
    LoadedVideos,
    VideoReadError,
    load_videos,
    read_video,
    vimeo_triplets,
)

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "FASHION_MNIST_DIRECTORY",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS_VARIABLE",
    "VIDEO_SUFFIXES",
    "IdxFormatError",
    "ImageHeader",
    "ImageLoadWarning",
    "ImageReadError",
    "LoadFailure",
    "LoadedVideos",
    "PreparedBatch",
    "Sample",
    "SampleSet",
    "SmallImageWarning",
    "UnknownSampleSetError",
    "VideoReadError",
    "atomic_write_bytes",
    "codec_roundtrip",
    "encode_png",
    "find_idx_files",
    "find_images",
    "idx_samples",
    "idx_splits",
    "is_nips2017_layout",
    "list_sample_sets",
    "load_folder",
    "load_idx",
    "load_nips2017",
    "load_samples",
    "load_source",
    "load_videos",
    "max_image_pixels",
    "preprocess",
    "preprocess_batch",
    "quantize",
    "read_idx",
    "read_image",
    "read_image_header",
    "read_video",
    "remove_stale_temporaries",
    "resize_center_crop",
    "save_png",
    "vimeo_triplets",
]
