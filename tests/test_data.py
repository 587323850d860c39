"""Tests for advqa.data: sample sets, image I/O, IDX parsing, folder loaders and transforms."""

from __future__ import annotations

import gzip
import io
import pathlib
import pickle
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import advqa.data.named
from advqa.data import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IdxFormatError,
    ImageLoadWarning,
    ImageReadError,
    LoadFailure,
    Sample,
    SampleSet,
    SmallImageWarning,
    UnknownSampleSetError,
    idx_samples,
    list_sample_sets,
    load_folder,
    load_idx,
    load_nips2017,
    load_samples,
    load_source,
    max_image_pixels,
    preprocess,
    preprocess_batch,
    quantize,
    read_idx,
    read_image,
    read_image_header,
    resize_center_crop,
    save_png,
)

FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- helpers


def _smooth_rgb(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A uint8 (H, W, 3) image with both texture and gradients, so codecs and resizers work."""
    generator = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height)[:, None, None]
    columns = np.linspace(0, 1, width)[None, :, None]
    noise = generator.random((height, width, 3))
    pixels = 0.4 * rows + 0.3 * columns + 0.3 * noise
    return np.round(pixels * 255).astype(np.uint8)


def _jpeg_bytes(height: int = 64, width: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_smooth_rgb(height, width)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write_idx(path: pathlib.Path, array: np.ndarray, *, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def _write_mnist_split(
    directory: pathlib.Path,
    *,
    prefix: str,
    count: int,
    compress: bool,
    separator: str = "-",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 256, size=(count, 5, 4), dtype=np.uint8)
    labels = generator.integers(0, 10, size=count, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    _write_idx(
        directory / f"{prefix}-images{separator}idx3-ubyte{suffix}", images, compress=compress
    )
    _write_idx(
        directory / f"{prefix}-labels{separator}idx1-ubyte{suffix}", labels, compress=compress
    )
    return images, labels


def _sample(name: str, image: torch.Tensor, label: int | None = None) -> Sample:
    return Sample(image=image, label=label, name=name, source="test", path=None)


# --------------------------------------------------------------------------- named sets


def test_imagenet_set_has_twenty_labelled_photos() -> None:
    samples = load_samples("imagenet")
    assert len(samples) == 20
    assert samples.failures == []
    assert samples[0].name == "imagenet_00_243"
    assert samples.labels[0] == 243
    assert all(isinstance(label, int) and 0 <= label < 1000 for label in samples.labels)
    assert len(set(samples.names)) == 20
    for sample in samples:
        assert sample.image.dtype == torch.float32
        assert sample.image.ndim == 3 and sample.image.shape[0] == 3
        assert sample.image.min() >= 0 and sample.image.max() <= 1
        assert sample.source == "imagenet"
        assert sample.path is not None and sample.path.stem == sample.name


@pytest.mark.parametrize(
    ("name", "channels", "side", "first_label"),
    [("mnist", 1, 28, 7), ("fashion-mnist", 1, 28, 9), ("cifar10", 3, 32, 3)],
)
def test_small_foolbox_sets(name: str, channels: int, side: int, first_label: int) -> None:
    samples = load_samples(name)
    assert len(samples) == 20
    assert samples.labels[0] == first_label
    assert all(0 <= label <= 9 for label in samples.labels)
    for sample in samples:
        assert tuple(sample.image.shape) == (channels, side, side)
        assert sample.image.min() >= 0 and sample.image.max() <= 1
    # Each name carries its label after the last underscore.
    for sample in samples:
        assert int(sample.name.rsplit("_", 1)[1]) == sample.label


def test_cifar10_excludes_cifar100() -> None:
    assert not any(name.startswith("cifar100") for name in load_samples("cifar10").names)


def test_photos_are_unlabelled_colour_images() -> None:
    samples = load_samples("photos")
    assert samples.failures == []
    assert len(samples) == 11
    assert {"astronaut", "coffee", "china", "flower", "grace_hopper"} <= set(samples.names)
    assert samples.labels == [None] * 11
    for sample in samples:
        assert sample.image.shape[0] == 3
        # Colour, not replicated grayscale.
        assert not torch.equal(sample.image[0], sample.image[1])


def test_unknown_set_name_lists_valid_names() -> None:
    with pytest.raises(UnknownSampleSetError) as caught:
        load_samples("imagenette")
    message = str(caught.value)
    for name in list_sample_sets():
        assert name in message
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)
    assert not message.startswith("'")


def test_list_sample_sets() -> None:
    assert list_sample_sets() == sorted(
        ["imagenet", "photos", "mnist", "fashion-mnist", "cifar10", "fashion-mnist-full",
         "fashion-mnist-train", "fashion-mnist-test"]
    )


def test_fashion_mnist_full_missing_directory_explains_install(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(advqa.data.named, "FASHION_MNIST_DIRECTORY", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_samples("fashion-mnist-full")


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_full_from_debian_package() -> None:
    train_images, train_labels = load_idx(FASHION_MNIST, split="train")
    test_images, test_labels = load_idx(FASHION_MNIST, split="test")
    assert tuple(train_images.shape) == (60000, 1, 28, 28)
    assert tuple(test_images.shape) == (10000, 1, 28, 28)
    assert train_images.dtype == torch.uint8 and train_labels.dtype == torch.int64
    assert tuple(train_labels.shape) == (60000,) and tuple(test_labels.shape) == (10000,)
    for labels in (train_labels, test_labels):
        assert labels.min() == 0 and labels.max() == 9
        # Fashion-MNIST is balanced.
        assert torch.bincount(labels).unique().numel() == 1
    # The foolbox samples are the first test images.
    first = load_samples("fashion-mnist")[0]
    assert torch.equal(first.image, test_images[0].float() / 255)
    assert first.label == test_labels[0].item()
    full = load_samples("fashion-mnist-full")
    assert len(full) == 70000 and full.names[60000] == "test_0000"
    assert full[60000].label == test_labels[0].item()
    test = load_samples("fashion-mnist-test")
    assert len(test) == 10000 and test.names[0] == "test_0000"
    assert test[0].source == "fashion-mnist-test"
    assert torch.equal(test[0].image, full[60000].image) and test[9999].label == \
        test_labels[9999].item()
    assert load_samples("fashion-mnist-train").names[-1] == full.names[59999]


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("separator", ["-", "."])
def test_idx_round_trip(tmp_path: pathlib.Path, compress: bool, separator: str) -> None:
    train = _write_mnist_split(
        tmp_path, prefix="train", count=7, compress=compress, separator=separator, seed=1
    )
    test = _write_mnist_split(
        tmp_path, prefix="t10k", count=3, compress=compress, separator=separator, seed=2
    )
    for split, (images, labels) in (("train", train), ("test", test)):
        loaded_images, loaded_labels = load_idx(tmp_path, split=split)
        assert loaded_images.dtype == torch.uint8 and loaded_labels.dtype == torch.int64
        assert torch.equal(loaded_images, torch.from_numpy(images).unsqueeze(1))
        assert torch.equal(loaded_labels, torch.from_numpy(labels).long())
    all_images, all_labels = load_idx(tmp_path, split="all")
    assert all_images.shape[0] == 10
    assert torch.equal(all_labels[7:], torch.from_numpy(test[1]).long())


def test_idx_samples_names_and_values(tmp_path: pathlib.Path) -> None:
    images, labels = _write_mnist_split(tmp_path, prefix="train", count=12, compress=True)
    _write_mnist_split(tmp_path, prefix="t10k", count=3, compress=True)
    samples = idx_samples(tmp_path, split="all")
    assert len(samples) == 15
    assert samples.names[0] == "train_00" and samples.names[11] == "train_11"
    assert samples.names[12] == "test_0"
    assert samples[0].label == labels[0]
    assert samples[0].image.shape == (1, 5, 4)
    assert torch.equal(samples[3].image[0] * 255, torch.from_numpy(images[3]).float())


def test_idx_prefers_plain_file_when_both_exist(tmp_path: pathlib.Path) -> None:
    images, _ = _write_mnist_split(tmp_path, prefix="train", count=4, compress=False, seed=3)
    _write_mnist_split(tmp_path, prefix="train", count=6, compress=True, seed=4)
    assert torch.equal(load_idx(tmp_path)[0][:, 0], torch.from_numpy(images))


def test_idx_generic_types(tmp_path: pathlib.Path) -> None:
    array = (np.arange(6).reshape(2, 3) * -1000).astype(">i4")
    path = tmp_path / "values.idx"
    path.write_bytes(struct.pack(">BBBBII", 0, 0, 0x0C, 2, 2, 3) + array.tobytes())
    parsed = read_idx(path)
    assert parsed.dtype == np.int32 and parsed.dtype.isnative
    np.testing.assert_array_equal(parsed, array)


def test_idx_size_mismatch_names_file(tmp_path: pathlib.Path) -> None:
    _write_mnist_split(tmp_path, prefix="train", count=4, compress=False)
    images_path = tmp_path / "train-images-idx3-ubyte"
    images_path.write_bytes(images_path.read_bytes()[:-3])
    with pytest.raises(IdxFormatError, match=r"train-images-idx3-ubyte.*declares shape"):
        load_idx(tmp_path)
    images_path.write_bytes(images_path.read_bytes() + b"\x00" * 10)
    with pytest.raises(IdxFormatError, match="declares shape"):
        load_idx(tmp_path)


def test_idx_bad_magic_and_count_mismatch(tmp_path: pathlib.Path) -> None:
    _write_mnist_split(tmp_path, prefix="train", count=4, compress=True)
    labels_path = tmp_path / "train-labels-idx1-ubyte.gz"
    # A 3-dimensional array where labels are expected has the wrong magic number.
    _write_idx(labels_path, np.zeros((4, 1, 1), dtype=np.uint8), compress=True)
    with pytest.raises(IdxFormatError, match=r"train-labels-idx1-ubyte\.gz.*magic number 2049"):
        load_idx(tmp_path)
    _write_idx(labels_path, np.zeros(5, dtype=np.uint8), compress=True)
    with pytest.raises(IdxFormatError, match=r"4 images but .* 5 labels"):
        load_idx(tmp_path)
    labels_path.write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(IdxFormatError, match="not an IDX file"):
        load_idx(tmp_path)
    labels_path.write_bytes(gzip.compress(b"\x00" * 100)[:20])
    with pytest.raises(IdxFormatError, match="corrupt gzip"):
        load_idx(tmp_path)


def test_idx_missing_files(tmp_path: pathlib.Path) -> None:
    _write_mnist_split(tmp_path, prefix="train", count=2, compress=False)
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_idx(tmp_path, split="test")
    with pytest.raises(ValueError, match="split"):
        load_idx(tmp_path, split="validation")


# --------------------------------------------------------------------------- image I/O


@pytest.mark.parametrize("shape", [(3, 17, 23), (1, 9, 8), (9, 8)])
def test_save_png_read_image_round_trip_is_exact(
    tmp_path: pathlib.Path, shape: tuple[int, ...]
) -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(shape, generator=generator)
    image.view(-1)[:4] = torch.tensor([0.0, 1.0, 0.5 / 255, 1.5 / 255])
    path = save_png(image, tmp_path / "image.png")
    loaded = read_image(path, mode="keep")
    expected = quantize(image)
    if len(shape) == 2:
        expected = expected.unsqueeze(0)
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded, expected)
    assert sorted(tmp_path.iterdir()) == [path]
    # Already on the grid: quantising again changes nothing.
    assert torch.equal(quantize(loaded), loaded)


def test_save_png_overwrites_and_keeps_directory_clean(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "image.png"
    save_png(torch.zeros(3, 4, 4), path)
    save_png(torch.ones(3, 4, 4), path)
    assert torch.equal(read_image(path), torch.ones(3, 4, 4))
    assert [entry.name for entry in tmp_path.iterdir()] == ["image.png"]


@pytest.mark.parametrize(
    ("value", "match"), [(1.01, r"outside|\[0, 1\]"), (-0.5, r"\[0, 1\]"), (float("nan"), "NaN")]
)
def test_save_png_rejects_bad_values(tmp_path: pathlib.Path, value: float, match: str) -> None:
    image = torch.full((3, 4, 4), 0.5)
    image[1, 2, 3] = value
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=match) as caught:
        save_png(image, path)
    assert str(path) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_save_png_tolerates_tiny_overshoot(tmp_path: pathlib.Path) -> None:
    image = torch.full((1, 2, 2), 1 + 5e-7)
    assert torch.equal(read_image(save_png(image, tmp_path / "x.png")), torch.ones(3, 2, 2))


def test_quantize_grid_and_clipping() -> None:
    values = torch.tensor([-0.1, 0.0, 0.3, 0.5, 1.0, 1.2])
    quantized = quantize(values)
    assert torch.equal(quantized * 255, torch.round(quantized * 255))
    assert quantized[0] == 0 and quantized[-1] == 1
    assert torch.equal(quantized[2], torch.round(torch.tensor(0.3) * 255) / 255)
    # Rounds to nearest rather than truncating.
    assert torch.equal(quantize(torch.tensor([1.4, 1.6]) / 255) * 255, torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError):
        quantize(torch.tensor([1, 2]))


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("RGBA", (10, 20, 30, 0), (10, 20, 30)),
        ("P", 7, None),
        ("CMYK", (0, 255, 0, 0), (255, 0, 255)),
        ("LA", (100, 40), (100, 100, 100)),
        ("L", 200, (200, 200, 200)),
    ],
)
def test_read_image_converts_modes_to_rgb(
    tmp_path: pathlib.Path, mode: str, value: object, expected: tuple[int, ...] | None
) -> None:
    source = Image.new(mode, (5, 4), value)
    path = tmp_path / ("image.jpg" if mode == "CMYK" else "image.png")
    source.save(path)
    image = read_image(path)
    assert tuple(image.shape) == (3, 4, 5) and image.dtype == torch.float32
    if expected is None:
        expected = source.convert("RGB").getpixel((0, 0))
    assert torch.equal(image[:, 0, 0] * 255, torch.tensor(expected, dtype=torch.float32))


def test_read_image_keeps_grayscale_only_when_asked(tmp_path: pathlib.Path) -> None:
    sixteen = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).save(tmp_path / "gray.png")
    deep = read_image(tmp_path / "deep.png", mode="keep")
    assert tuple(deep.shape) == (1, 2, 2)
    assert torch.allclose(deep[0], torch.from_numpy(sixteen.astype(np.float32)) / 65535)
    assert tuple(read_image(tmp_path / "deep.png").shape) == (3, 2, 2)
    assert tuple(read_image(tmp_path / "gray.png", mode="keep").shape) == (1, 1, 2)
    with pytest.raises(ValueError, match="mode"):
        read_image(tmp_path / "gray.png", mode="grey")


def test_read_image_errors_name_path_and_cause(tmp_path: pathlib.Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("definitely not an image")
    with pytest.raises(ImageReadError, match=r"notes\.png: not a PNG, JPEG, BMP or TIFF"):
        read_image(text)
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(ImageReadError, match="empty"):
        read_image(empty)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "absent.png")
    error = ImageReadError(text, "reason")
    restored = pickle.loads(pickle.dumps(error))
    assert (restored.path, restored.reason, str(restored)) == (error.path, "reason", str(error))


@pytest.mark.parametrize("load_truncated", [False, True])
def test_truncated_files_fail_even_if_pillow_is_lenient(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, load_truncated: bool
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    data = _jpeg_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    png = io.BytesIO()
    Image.fromarray(_smooth_rgb(32, 32)).save(png, format="PNG")
    (tmp_path / "cut.png").write_bytes(png.getvalue()[:-40])
    for name in ("cut.jpg", "cut.png"):
        with pytest.raises(ImageReadError, match=name.replace(".", r"\.") + ".*truncated"):
            read_image(tmp_path / name)
    # Complete files still load, including trailing bytes after the end marker.
    (tmp_path / "whole.jpg").write_bytes(data + b"\x00trailer")
    assert read_image(tmp_path / "whole.jpg").shape == (3, 64, 64)


# --------------------------------------------------------------------------- folders


def _make_mixed_folder(root: pathlib.Path) -> None:
    root.mkdir(exist_ok=True)
    save_png(torch.full((3, 6, 5), 0.25), root / "a_valid.png")
    Image.fromarray(_smooth_rgb(7, 9)).save(root / "b_valid.bmp")
    Image.fromarray(_smooth_rgb(8, 8)).save(root / "c_valid.TIFF")
    (root / "d_valid.JPG").write_bytes(_jpeg_bytes(16, 12))
    data = _jpeg_bytes()
    (root / "e_truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "f_empty.png").touch()
    (root / "g_text.png").write_text("hello")
    (root / "readme.txt").write_text("not an image")
    (root / ".hidden.png").write_text("ignored")


def test_load_folder_skips_corrupt_files_with_warnings(tmp_path: pathlib.Path) -> None:
    _make_mixed_folder(tmp_path)
    with pytest.warns(ImageLoadWarning) as record:
        samples = load_folder(tmp_path)
    assert samples.names == ["a_valid", "b_valid", "c_valid", "d_valid"]
    assert [tuple(sample.image.shape) for sample in samples] == [
        (3, 6, 5),
        (3, 7, 9),
        (3, 8, 8),
        (3, 16, 12),
    ]
    assert samples.labels == [None] * 4
    assert all(sample.source == str(tmp_path) for sample in samples)
    assert torch.equal(samples[0].image, torch.full((3, 6, 5), 64 / 255))
    failed = {pathlib.Path(failure.path).name: failure.reason for failure in samples.failures}
    assert set(failed) == {"e_truncated.jpg", "f_empty.png", "g_text.png"}
    assert "truncated" in failed["e_truncated.jpg"]
    assert "empty" in failed["f_empty.png"]
    assert "not a PNG" in failed["g_text.png"]
    assert len(record) == 3
    assert all("skipped" in str(warning.message) for warning in record)


def test_load_folder_recursive_names_are_unique(tmp_path: pathlib.Path) -> None:
    (tmp_path / "sub").mkdir()
    for path in (tmp_path / "x.png", tmp_path / "sub" / "x.png", tmp_path / "y.png"):
        save_png(torch.zeros(1, 2, 2), path)
    save_png(torch.zeros(1, 3, 3), tmp_path / "y.bmp.png")
    Image.new("RGB", (2, 2)).save(tmp_path / "y.bmp")
    assert load_folder(tmp_path).names == ["x", "y.bmp", "y.bmp.png", "y.png"]
    assert load_folder(tmp_path, recursive=True).names == [
        "sub__x",
        "x",
        "y.bmp",
        "y.bmp.png",
        "y.png",
    ]


def test_load_folder_labels_csv(tmp_path: pathlib.Path) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name in ("cat.png", "dog.png", "sub/eel.png", "unlabelled.png"):
        save_png(torch.rand(3, 4, 4), images / name)
    table = tmp_path / "labels.csv"
    table.write_text("filename,label,comment\ncat.png,3,x\ndog,5,\nsub/eel,7,\nghost.png,1,\n")
    with pytest.warns(ImageLoadWarning, match="ghost"):
        samples = load_folder(images, labels=table, recursive=True)
    assert dict(zip(samples.names, samples.labels, strict=True)) == {
        "cat": 3,
        "dog": 5,
        "sub__eel": 7,
        "unlabelled": None,
    }
    assert len(samples.failures) == 1
    assert samples.failures[0].path == str(images / "ghost.png")
    assert "line 5" in samples.failures[0].reason


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("name,label\ncat.png,1\n", r"line 1: missing column\(s\) filename"),
        ("filename,label\ncat.png,1\ncat.png,one\n", r"line 3: label 'one' is not an integer"),
        ("filename,label\ncat.png,1.5\n", r"line 2: label '1.5'"),
        ("filename,label\ncat.png,-2\n", r"line 2: label -2"),
        ("filename,label\ncat.png,1\ncat,2\n", r"line 3: second row"),
        ("", "empty file"),
    ],
)
def test_load_folder_bad_labels_csv(tmp_path: pathlib.Path, content: str, match: str) -> None:
    images = tmp_path / "images"
    images.mkdir()
    save_png(torch.zeros(3, 2, 2), images / "cat.png")
    table = tmp_path / "labels.csv"
    table.write_text(content)
    with pytest.raises(ValueError, match=match) as caught:
        load_folder(images, labels=table)
    assert str(table) in str(caught.value)


def test_load_folder_ambiguous_stem(tmp_path: pathlib.Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    save_png(torch.zeros(3, 2, 2), tmp_path / "one" / "cat.png")
    save_png(torch.zeros(3, 2, 2), tmp_path / "two" / "cat.png")
    table = tmp_path / "labels.csv"
    table.write_text("filename,label\ncat,1\n")
    with pytest.raises(ValueError, match="matches several images"):
        load_folder(tmp_path, labels=table, recursive=True)


def test_load_folder_requires_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_folder(tmp_path / "absent")
    (tmp_path / "file.png").touch()
    with pytest.raises(NotADirectoryError):
        load_folder(tmp_path / "file.png")


def _make_nips_folder(root: pathlib.Path) -> None:
    (root / "images").mkdir(parents=True)
    for image_id in ("0a1b", "2c3d", "unlisted"):
        save_png(torch.rand(3, 8, 8), root / "images" / f"{image_id}.png")
    (root / "images.csv").write_text(
        "ImageId,URL,x1,y1,x2,y2,TrueLabel,TargetClass\n"
        "0a1b,http://x,0,0,1,1,1,5\n"
        "2c3d,http://y,0,0,1,1,1000,7\n"
        "gone,http://z,0,0,1,1,244,9\n"
    )


def test_nips2017_labels_are_shifted_to_zero_based(tmp_path: pathlib.Path) -> None:
    _make_nips_folder(tmp_path)
    with pytest.warns(ImageLoadWarning, match="gone"):
        samples = load_nips2017(tmp_path)
    assert samples.names == ["0a1b", "2c3d", "unlisted"]
    assert samples.labels == [0, 999, None]
    assert [failure.path for failure in samples.failures] == [str(tmp_path / "images" / "gone.png")]
    with pytest.warns(ImageLoadWarning):
        assert load_folder(tmp_path).labels == [0, 999, None]
    with pytest.warns(ImageLoadWarning):
        assert load_source(str(tmp_path)).labels == [0, 999, None]


def test_nips2017_rejects_background_label(tmp_path: pathlib.Path) -> None:
    _make_nips_folder(tmp_path)
    (tmp_path / "images.csv").write_text("ImageId,TrueLabel\n0a1b,0\n")
    with pytest.raises(ValueError, match=r"images\.csv, line 2: label 0 is not in 1\.\.1000"):
        load_nips2017(tmp_path)


# --------------------------------------------------------------------------- load_source


def test_load_source_dispatch(tmp_path: pathlib.Path) -> None:
    assert len(load_source("mnist")) == 20
    idx_folder = tmp_path / "idx"
    idx_folder.mkdir()
    _write_mnist_split(idx_folder, prefix="t10k", count=3, compress=True)
    assert load_source(idx_folder).names == ["test_0", "test_1", "test_2"]
    plain = tmp_path / "plain"
    plain.mkdir()
    save_png(torch.zeros(3, 2, 2), plain / "only.png")
    assert load_source(str(plain)).names == ["only"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_source(empty)
    with pytest.raises(ValueError, match="imagenet") as caught:
        load_source("imagenett")
    assert "not an existing folder" in str(caught.value)


# --------------------------------------------------------------------------- containers


def test_sample_set_indexing() -> None:
    samples = SampleSet(
        [_sample(f"s{index}", torch.zeros(3, 2, 2), index) for index in range(4)],
        [LoadFailure("broken.png", "corrupt")],
    )
    assert len(samples) == 4
    assert samples[1].name == "s1"
    assert samples[-1].label == 3
    subset = samples[1:3]
    assert isinstance(subset, SampleSet)
    assert subset.names == ["s1", "s2"] and subset.labels == [1, 2]
    assert subset.failures == samples.failures
    assert [sample.name for sample in samples] == samples.names
    with pytest.raises(ValueError, match="duplicate"):
        SampleSet([_sample("same", torch.zeros(3, 1, 1)), _sample("same", torch.zeros(3, 1, 1))])


def test_sample_validates_image() -> None:
    with pytest.raises(TypeError, match="float32"):
        _sample("x", torch.zeros(3, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        _sample("x", torch.zeros(2, 2, 2))


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize(
    ("height", "width", "resize", "expected_resized"),
    [(300, 200, None, (336, 224)), (200, 300, None, (224, 336)), (375, 500, 256, (256, 341))],
)
def test_resize_center_crop_shapes(
    height: int, width: int, resize: int | None, expected_resized: tuple[int, int]
) -> None:
    image = torch.rand(3, height, width)
    output = resize_center_crop(image, 224, resize=resize)
    assert tuple(output.shape) == (3, 224, 224) and output.dtype == torch.float32
    assert output.min() >= 0 and output.max() <= 1
    batch = resize_center_crop(image.unsqueeze(0).repeat(2, 1, 1, 1), 224, resize=resize)
    assert tuple(batch.shape) == (2, 3, 224, 224)
    assert torch.allclose(batch[1], output)
    resized = torch.nn.functional.interpolate(
        image[None], size=expected_resized, mode="bilinear", antialias=True
    )[0]
    top, left = [round((side - 224) / 2) for side in expected_resized]
    assert torch.allclose(output, resized[:, top : top + 224, left : left + 224].clamp(0, 1))


def test_resize_center_crop_keeps_constant_images_constant() -> None:
    for shape in ((3, 480, 640), (1, 28, 28), (3, 100, 57)):
        output = resize_center_crop(torch.full(shape, 0.3), 64)
        assert torch.allclose(output, torch.full_like(output, 0.3), atol=1e-6)


def test_resize_center_crop_is_identity_at_target_size() -> None:
    image = torch.rand(3, 32, 48)
    assert torch.equal(resize_center_crop(image, 32), image[:, :, 8:40])


@pytest.mark.parametrize(("height", "width"), [(240, 320), (333, 250), (50, 70)])
def test_resize_center_crop_matches_pillow(height: int, width: int) -> None:
    size, resize = 64, 72
    pixels = _smooth_rgb(height, width, seed=5)
    short, long = min(height, width), max(height, width)
    new_long = int(resize * long / short)
    new_size = (new_long, resize) if width >= height else (resize, new_long)  # PIL: (W, H)
    reference = Image.fromarray(pixels).resize(new_size, Image.Resampling.BILINEAR)
    left = round((reference.width - size) / 2)
    top = round((reference.height - size) / 2)
    reference = reference.crop((left, top, left + size, top + size))
    expected = torch.from_numpy(np.asarray(reference).copy()).permute(2, 0, 1).float() / 255
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    output = resize_center_crop(image, size, resize=resize)
    difference = (output - expected).abs()
    # Pillow rounds to 8 bits and uses fixed-point weights; we stay in float.
    assert difference.max() < 1.5 / 255
    assert difference.mean() < 0.4 / 255


def test_resize_center_crop_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        resize_center_crop(torch.rand(3, 10, 10), 8, resize=4)
    with pytest.raises(ValueError, match="shape"):
        resize_center_crop(torch.rand(10, 10), 8)
    with pytest.raises(TypeError):
        resize_center_crop(torch.zeros(3, 10, 10, dtype=torch.uint8), 8)


def test_preprocess_mixed_sizes_and_channels() -> None:
    samples = SampleSet(
        [
            _sample("gray", torch.rand(1, 28, 28), 1),
            _sample("wide", torch.rand(3, 40, 90), 2),
            _sample("gray2", torch.rand(1, 28, 28), 3),
        ]
    )
    batch = preprocess(samples, size=32)
    assert tuple(batch.shape) == (3, 3, 32, 32) and batch.dtype == torch.float32
    assert torch.equal(batch[0, 0], batch[0, 2])
    assert torch.allclose(batch[1], resize_center_crop(samples[1].image, 32))
    assert torch.allclose(batch[2, :1], resize_center_crop(samples[2].image, 32))
    with pytest.raises(ValueError, match="channels"):
        preprocess(samples, size=32, rgb=False)
    gray = preprocess([samples[0], samples[2]], size=16, rgb=False)
    assert tuple(gray.shape) == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="no samples"):
        preprocess([], size=16)


def test_preprocess_named_set_defaults_to_224() -> None:
    with pytest.warns(SmallImageWarning, match="4 of 4 images"):
        batch = preprocess(load_samples("cifar10")[:4])
    assert tuple(batch.shape) == (4, 3, 224, 224)


# --------------------------------------------------------------------------- file-backed samples


def _photo(name: str = "astronaut") -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


def test_load_folder_keeps_paths_not_pixels(tmp_path: pathlib.Path) -> None:
    _photo().save(tmp_path / "astronaut.png")
    (tmp_path / "gray.jpg").write_bytes(_jpeg_bytes(30, 40))
    Image.fromarray(np.zeros((5, 7), np.uint16)).save(tmp_path / "deep.png")
    samples = load_folder(tmp_path, mode="keep")
    assert [sample.in_memory for sample in samples] == [False] * 3
    assert [(sample.size, sample.channels) for sample in samples] == [
        ((512, 512), 3), ((5, 7), 1), ((30, 40), 3)]
    for sample in samples:
        assert torch.equal(sample.image, read_image(sample.path, mode="keep"))
    # Nothing was kept: the pixels come from the file on each use.
    (tmp_path / "astronaut.png").unlink()
    with pytest.raises(FileNotFoundError):
        samples[0].image  # noqa: B018
    Image.new("RGB", (9, 9)).save(tmp_path / "deep.png")
    with pytest.raises(ImageReadError, match="changed since it was listed"):
        samples[1].load()


_BOUNDED_MEMORY = """
import resource, sys
import torch
from advqa.data import load_folder, preprocess
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
batch = preprocess(load_folder(sys.argv[1]), size=224, resize=256)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(tuple(batch.shape), (after - before) // 1024)
"""


def test_preprocessing_a_folder_holds_one_decoded_image(tmp_path: pathlib.Path) -> None:
    # Three 6000 x 6000 PNGs are 432 MB each as float32: decoding the folder up front
    # raises peak memory by over 1.3 GB; one at a time, by about one 8-bit image.
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "big"
    folder.mkdir()
    _photo("coffee").resize((6000, 6000)).save(folder / "a.png", compress_level=1)
    for name in ("b.png", "c.png"):
        shutil.copy(folder / "a.png", folder / name)
    finished = subprocess.run(
        [sys.executable, "-c", _BOUNDED_MEMORY, str(folder)],
        capture_output=True, text=True, check=True, timeout=300,
    )
    shape, growth_mib = finished.stdout.rsplit(")", 1)
    assert shape + ")" == "(3, 3, 224, 224)"
    assert int(growth_mib) < 450, finished.stdout


def test_reduced_decoding_only_above_four_times_the_target(tmp_path: pathlib.Path) -> None:
    # Shorter sides below 4 x resize decode at full size and give exactly what an
    # in-memory sample gives, so results on ordinary images do not change.
    photo = _photo("coffee")  # 600 x 400
    photo.save(tmp_path / "native.png")
    photo.resize((1020, 1023)).save(tmp_path / "just_below.png")
    photo.resize((1536, 1024)).save(tmp_path / "reduced.jpg", quality=95)
    photo.resize((700, 1100)).save(tmp_path / "tall.jpg", quality=95)
    samples = load_folder(tmp_path)
    assert samples.names == ["just_below", "native", "reduced", "tall"]
    held = SampleSet([Sample(read_image(s.path), s.label, s.name, s.source) for s in samples])
    lazy, exact = preprocess(samples, size=224, resize=256), preprocess(held, size=224, resize=256)
    assert [torch.equal(lazy[i], exact[i]) for i in range(4)] == [True, True, False, True]
    assert tuple(samples[2].load(min_side=512).shape) == (3, 512, 768)  # DCT-scaled 1/2
    assert tuple(samples[0].load(min_side=512).shape) == (3, 1023, 1020)
    assert (lazy[2] - exact[2]).abs().max() < 9 / 255


@pytest.mark.parametrize(("suffix", "largest", "mean"), [(".png", 7, 0.35), (".jpg", 3, 0.2)])
def test_reduced_decoding_of_a_huge_photo_stays_close(
    tmp_path: pathlib.Path, suffix: str, largest: float, mean: float
) -> None:
    # The numbers preprocess's docstring states: 6/255 (PNG) and 2/255 (JPEG) at most.
    path = tmp_path / f"astronaut{suffix}"
    big = _photo().resize((4000, 4000), Image.Resampling.BICUBIC)
    big.save(path, **({"quality": 95} if suffix == ".jpg" else {"compress_level": 1}))
    sample = Sample.from_file(path, label=None, name="astronaut", source="test")
    # PNG: 4000 // 512 = 7, reduced by averaging; JPEG: DCT-scaled to 1/4.
    expected = (572, 572) if suffix == ".png" else (1000, 1000)
    assert tuple(sample.load(min_side=512).shape[-2:]) == expected
    reduced = preprocess([sample], size=224, resize=256)[0]
    full = resize_center_crop(read_image(path), 224, resize=256)
    difference = (reduced - full).abs() * 255
    assert difference.max() < largest
    assert difference.mean() < mean


def test_preprocess_batch_skips_what_fails_to_decode(tmp_path: pathlib.Path) -> None:
    save_png(torch.rand(3, 20, 30), tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(_corrupt_jpeg("junk"))
    save_png(torch.rand(1, 24, 24), tmp_path / "c.png")
    samples = load_folder(tmp_path)  # headers are fine
    assert samples.names == ["a", "b", "c"] and samples.failures == []
    held = _sample("held", torch.rand(3, 16, 16))
    with pytest.warns(ImageLoadWarning, match=r"skipped .*b\.jpg: Corrupt JPEG data"):
        batch = preprocess_batch([samples[0], held, samples[1], samples[2]], size=16)
    assert [sample.name for sample in batch.samples] == ["a", "held", "c"]
    assert tuple(batch.images.shape) == (3, 3, 16, 16)
    assert torch.equal(batch.images[1], resize_center_crop(held.image, 16))
    assert torch.equal(batch.images, preprocess([samples[0], held, samples[2]], size=16))
    assert [pathlib.Path(failure.path).name for failure in batch.failures] == ["b.jpg"]
    with pytest.warns(ImageLoadWarning):
        empty = preprocess_batch([samples[1]], size=8, rgb=False)
    assert tuple(empty.images.shape) == (0, 3, 8, 8) and empty.samples == []
    with pytest.raises(ImageReadError, match="Corrupt JPEG data"):
        preprocess(samples, size=16)


# --------------------------------------------------------------------------- large images


def _bilevel_png(path: pathlib.Path, width: int, height: int) -> pathlib.Path:
    # A huge image in a tiny file: 1-bit pixels, all zero.
    Image.new("1", (width, height)).save(path)
    return path


def test_pixel_limit_refuses_huge_images_before_decoding(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADVQA_MAX_IMAGE_PIXELS", raising=False)
    huge = _bilevel_png(tmp_path / "huge.png", 10000, 10000)
    assert huge.stat().st_size < 200_000
    _bilevel_png(tmp_path / "large.png", 8000, 8000)
    assert DEFAULT_MAX_IMAGE_PIXELS == max_image_pixels() == 80_000_000
    for read in (read_image, read_image_header):
        with pytest.raises(ImageReadError) as caught:
            read(huge)
        message = str(caught.value)
        for part in ("huge.png", "10000×10000", "100,000,000", "80,000,000", "max_pixels=",
                     "ADVQA_MAX_IMAGE_PIXELS"):
            assert part in message
    assert read_image_header(tmp_path / "large.png").width == 8000
    with pytest.warns(ImageLoadWarning, match="huge.png"):
        samples = load_folder(tmp_path)
    assert samples.names == ["large"]
    assert "limit" in samples.failures[0].reason
    # Overridable by keyword and by the environment; the keyword wins.
    assert read_image_header(huge, max_pixels=10**8).height == 10000
    monkeypatch.setenv("ADVQA_MAX_IMAGE_PIXELS", "100000000")
    assert load_folder(tmp_path).names == ["huge", "large"]
    with pytest.raises(ImageReadError, match="more than the limit of 99,999,999"):
        read_image_header(huge, max_pixels=99_999_999)
    monkeypatch.setenv("ADVQA_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match=r"\$ADVQA_MAX_IMAGE_PIXELS must be a positive integer"):
        load_folder(tmp_path)
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        read_image(huge, max_pixels=0)


def test_pillow_bomb_check_follows_the_pixel_limit(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "image.png"
    save_png(torch.rand(3, 40, 40), path)
    # Pillow alone would refuse 1600 pixels (> 2 x 100); our limit allows them.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).shape == (3, 40, 40)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored
    # Pillow without a limit does not lift ours.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageReadError, match="more than the limit of 1,000"):
        read_image(path, max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS is None


# --------------------------------------------------------------------------- tiny images


def test_preprocess_warns_when_upsampling_more_than_four_times() -> None:
    dot = _sample("dot", torch.rand(3, 1, 1))
    with pytest.warns(SmallImageWarning, match=r"1 of 1 images .* dot \(1 px, 224\.0×\)"):
        assert tuple(preprocess([dot]).shape) == (1, 3, 224, 224)
    edge = [_sample("four", torch.rand(3, 56, 80)), _sample("under", torch.rand(3, 80, 55))]
    with pytest.warns(SmallImageWarning, match=r"1 of 2 images .* under \(55 px, 4\.1×\)"):
        preprocess(edge, size=224)
    many = [_sample(f"m{index}", torch.rand(1, 28, 28)) for index in range(7)]
    with pytest.warns(SmallImageWarning, match=r"m4 \(28 px, 8\.0×\) and 2 more"):
        preprocess(many, size=224)
    # Images at (or near) the model's own size are not worth a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preprocess(load_samples("cifar10")[:4], size=32)
        preprocess(edge[:1], size=224)


# --------------------------------------------------------------------------- corrupt JPEGs


def _rocket_jpeg() -> bytes:
    import skimage

    return (pathlib.Path(skimage.__file__).parent / "data" / "rocket.jpg").read_bytes()


def _corrupt_jpeg(kind: str) -> bytes:
    """scikit-image's rocket.jpg with its entropy-coded data damaged, end marker intact."""
    data = _rocket_jpeg()
    position = 2
    while data[position + 1] != 0xDA:  # walk the marker segments to the scan
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    scan = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    end = data.rindex(b"\xff\xd9")
    middle = (scan + end) // 2
    if kind == "junk":  # bytes overwritten mid-scan (no 0xFF, so no stray markers)
        junk = np.random.default_rng(0).integers(0, 255, 64, dtype=np.uint8).tobytes()
        return data[:middle] + junk + data[middle + 64 :]
    assert kind == "cut"  # the second half of the scan lost, the end marker kept
    return data[:middle] + b"\xff\xd9"


@pytest.mark.parametrize(
    ("kind", "message"),
    [("junk", r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9"),
     ("cut", "Corrupt JPEG data: premature end of data segment")],
)
@pytest.mark.parametrize("load_truncated", [False, True])
def test_corrupt_jpeg_data_is_refused(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, kind: str, message: str,
    load_truncated: bool,
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    path = tmp_path / f"{kind}.jpg"
    path.write_bytes(_corrupt_jpeg(kind))
    # Pillow itself decodes it without a word: the damage is only in the pixels.
    with Image.open(path) as image:
        image.load()
    assert read_image_header(path).format == "JPEG"
    with pytest.raises(ImageReadError, match=f"{kind}\\.jpg: {message}"):
        read_image(path)
    (tmp_path / "intact.jpg").write_bytes(_rocket_jpeg())
    assert read_image(tmp_path / "intact.jpg").shape == (3, 427, 640)
