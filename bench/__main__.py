"""``python -m bench``: the same as ``condense-bench`` (e.g. under ``torchrun ... -m bench``)."""

from bench.cli import main

main()
