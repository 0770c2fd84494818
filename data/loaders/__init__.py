"""File-based dataset loaders (registered on import).

Every loader has the signature ``fn(root: Path | None = None, download: bool = False, **options)`` and
returns :class:`~data.datasets.RawSplits` with float32 pixels in ``[0, 1]`` (``N x C x H x W``) and
``int64`` labels. Files are looked up under ``root`` when one is given (and only there), else under
:func:`default_data_root` and then known system locations, in the folder layouts torchvision writes;
absent files raise an actionable :class:`FileNotFoundError` and
corrupt ones a :class:`ValueError` naming the file. Pickled CIFAR batches are read with a restricted
unpickler that only rebuilds numpy arrays and plain containers, so a crafted file cannot run code.

One submodule per file format: :mod:`~data.loaders.idx` (MNIST, Fashion-MNIST),
:mod:`~data.loaders.cifar` (CIFAR-10/100), :mod:`~data.loaders.svhn` and :mod:`~data.loaders.folders`
(Tiny ImageNet, ImageFolder); :mod:`~data.loaders._files` holds what they share. Importing this package
imports all of them, which registers every dataset; the public names are re-exported here.
"""

from data.loaders import cifar, folders, idx, svhn
from data.loaders._files import DIGIT_CLASSES
from data.loaders.cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, load_cifar10, load_cifar100
from data.loaders.folders import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TINY_IMAGENET_URL,
    load_image_folder,
    load_tiny_imagenet,
)
from data.loaders.idx import (
    DEBIAN_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MNIST_MEAN,
    MNIST_STD,
    load_fashion_mnist,
    load_mnist,
)
from data.loaders.svhn import SVHN_MEAN, SVHN_STD, load_svhn

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DEBIAN_FASHION_MNIST_DIR",
    "DIGIT_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "MNIST_MEAN",
    "MNIST_STD",
    "SVHN_MEAN",
    "SVHN_STD",
    "TINY_IMAGENET_URL",
    "cifar",
    "folders",
    "idx",
    "load_cifar10",
    "load_cifar100",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "load_svhn",
    "load_tiny_imagenet",
    "svhn",
]
