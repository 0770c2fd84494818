"""Malformed inputs, generated: every one is refused with the suite's error type, and nothing else.

Each file kind (set files, ``.pt`` sets, graph sets, records, teacher weights) gets at least 200
inputs that are wrong by construction (truncated, wrong types, huge sizes, deep nesting, NaN,
path tricks, codes out of range) and must raise :class:`data.untrusted.BadFileError`; option
values (methods and protocols) must raise :class:`data.untrusted.InputError`. Random byte flips of
valid files may happen to stay valid, so they must load or be refused, never raise anything else.
While the readers run, an audit hook watches every file opened: nothing outside the test's folder
(and Python's own installation) is read, and nothing at all is written.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import pickle
import random
import struct
import sys
import sysconfig
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save as save_safetensors_bytes

from condense import create_method
from data import load_dataset
from data._typed import field_types
from data.graphs import GraphSet
from data.graphs.graphset import graph_set_of
from data.setfile import METADATA_KEY, encode_set_file
from data.synthetic import Budget, SyntheticSet
from data.untrusted import BadFileError, InputError
from evaluation.models import create_model
from evaluation.protocols import derive_protocol, get_protocol
from evaluation.teachers import load_weights
from leaderboard import ModelResult, RecordCosts, ResultRecord, read_record

PER_KIND = 200
NAN = float("nan")


# -- the audit: what the readers open ------------------------------------------------------------

_OPENED: list[tuple[str, str]] | None = None


def _audit(event: str, arguments: tuple[Any, ...]) -> None:
    if _OPENED is not None and event == "open" and isinstance(arguments[0], (str, bytes, Path)):
        mode = arguments[1] if len(arguments) > 1 and isinstance(arguments[1], str) else "r"
        _OPENED.append((str(arguments[0]), mode or "r"))


sys.addaudithook(_audit)
_PYTHON_HOMES = tuple(
    str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, *sysconfig.get_paths().values()} if p
)


class Confined:
    """Run readers while recording what they open; :meth:`check` asserts they stayed in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder.resolve())
        self.opened: list[tuple[str, str]] = []

    def __enter__(self) -> Confined:
        global _OPENED
        _OPENED = self.opened
        return self

    def __exit__(self, *exc: object) -> None:
        global _OPENED
        _OPENED = None

    def check(self) -> None:
        for path, mode in self.opened:
            resolved = str(Path(path).resolve())
            assert not any(flag in mode for flag in "wax+"), f"a reader wrote {path} ({mode})"
            inside = resolved.startswith(self.folder) or resolved.startswith(_PYTHON_HOMES)
            assert inside, f"a reader opened {path}, outside {self.folder}"


def refused_files(kind: str, cases: list[tuple[str, bytes]], load: Callable[[Path], Any], folder: Path) -> int:
    """Write each case to a file and assert ``load`` refuses it with :class:`BadFileError`."""
    assert len(cases) >= PER_KIND, f"only {len(cases)} {kind} cases"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (_, raw) in enumerate(cases):
        paths.append(folder / f"case{index}{kind}")
        paths[-1].write_bytes(raw)
    accepted = []
    with Confined(folder) as confined:
        for (description, _), path in zip(cases, paths, strict=True):
            try:
                load(path)
            except BadFileError as error:
                assert error.path == path and str(path) in str(error), description
            except Exception as error:  # noqa: BLE001 - the point: nothing but BadFileError
                pytest.fail(f"{kind} case {description!r} raised {type(error).__name__}: {error}")
            else:
                accepted.append(description)
    confined.check()
    assert not accepted, f"{kind}: accepted bad input(s): {accepted[:10]}"
    return len(cases)


def flipped_files(raw: bytes, load: Callable[[Path], Any], folder: Path, rng: random.Random, count: int) -> int:
    """Random byte flips of a valid file: each loads or is refused; returns how many were refused."""
    folder.mkdir(parents=True, exist_ok=True)
    refused = 0
    for index in range(count):
        mutated = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        path = folder / f"flip{index}"
        path.write_bytes(bytes(mutated))
        try:
            load(path)
        except BadFileError:
            refused += 1
    return refused


def truncations(
    raw: bytes, rng: random.Random, count: int, *, keep_at_most: int | None = None
) -> list[tuple[str, bytes]]:
    top = len(raw) if keep_at_most is None else keep_at_most
    lengths = {0, 1, 7, 8, top - 1} | {rng.randrange(top) for _ in range(count)}
    return [(f"truncated to {n} bytes", raw[:n]) for n in sorted(lengths) if 0 <= n < top]


def garbage(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    return [(f"random bytes #{i}", rng.randbytes(rng.randrange(0, 2048))) for i in range(count)]


def deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def deep_text(depth: int) -> str:
    """JSON text nested ``depth`` levels deep (too deep for ``json.dumps`` to write)."""
    return "[" * depth + "0" + "]" * depth


def with_raw(document: dict[str, Any], key: str, raw_json: str) -> bytes:
    """``document`` as JSON with the value of ``key`` replaced by ``raw_json``."""
    marker = "__RAW__"
    return json.dumps({**document, key: marker}).replace(f'"{marker}"', raw_json).encode()


# -- synthetic sets ------------------------------------------------------------------------------


def valid_sets() -> list[SyntheticSet]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(6, 1, 8, 8, generator=generator)
    plain = SyntheticSet(images, torch.tensor([0, 0, 1, 1, 2, 2]), 3, (0.5,), (0.25,), Budget(ipc=2))
    soft = dataclasses.replace(plain, labels=torch.softmax(torch.randn(6, 3, generator=generator), 1), learned_lr=0.01)
    pooled = dataclasses.replace(plain, sampler={"name": "rs2", "per_round": 3, "schedule": "equal_epochs"})
    mosaic = dataclasses.replace(plain, decoder={"name": "partition", "factor": 2})
    return [plain, soft, pooled, mosaic]


#: Metadata values that are wrong by construction, per field.
BAD_METADATA: dict[str, list[Any]] = {
    "format": ["other/format", None, 3, ""],
    "format_version": [0, 2, "1", None, 1.5, True, -1],
    "num_classes": [0, -1, 1.5, "3", None, True, 10**9, [], {}, 2],
    "mean": [[], [NAN], [math.inf], ["a"], None, 3, [0.0, 0.0], [True], {}, deep(80)],
    "std": [[0.0], [-1.0], [], None, "x", [0.1, 0.1], [NAN], [-math.inf], [False]],
    "budget": [
        None,
        [],
        {"ipc": 0},
        {"ipc": -3},
        {"ipc": 1.5},
        {"fraction": 2},
        {"ipc": 1, "fraction": 0.5},
        {"x": 1},
        {"ipc": "10"},
        {"fraction": NAN},
        "ipc=2",
    ],
    "learned_lr": [-0.1, 0, "0.1", [], {}, NAN, math.inf],
    "extras": ["x", [1], ["missing"], {}, 3],
    "provenance": ["x", 3, [], deep(200)],
    "sampler": [
        {"name": "foo"},
        {"name": "rs2"},
        {"name": "rs2", "per_round": 0},
        {"name": "rs2", "per_round": 10**9},
        {"name": "rs2", "per_round": 3, "schedule": "x"},
        "rs2",
        [1],
        {"name": "rs2", "per_round": 3, "x": 1},
        {"name": "rs2", "per_round": 1.5},
    ],
    "decoder": [
        {"name": "nope"},
        {"name": "partition", "factor": 3},
        {"name": "partition", "factor": 0},
        {"name": "partition"},
        {"name": "partition", "factor": 2, "extra": 1},
        {"name": "compensators", "architectures": 1},
        "partition",
        [2],
    ],
}


def set_file_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    cases: list[tuple[str, bytes]] = []
    for base in valid_sets():
        tensors, metadata = base._tensors(), base._metadata()
        for name, values in BAD_METADATA.items():
            for value in values:
                cases.append((f"{name}={str(value)[:40]}", encode_set_file(tensors, {**metadata, name: value})))
        for name in ("format", "num_classes", "mean", "std", "budget"):
            cases.append((f"no {name}", encode_set_file(tensors, {k: v for k, v in metadata.items() if k != name})))
        raw = base.to_bytes()
        cases += truncations(raw, rng, 6)
    images, labels = valid_sets()[0].images, valid_sets()[0].labels
    metadata = valid_sets()[0]._metadata()
    bad_tensors = {
        "NaN pixel": {"images": images.clone().index_fill_(0, torch.tensor([1]), NAN), "labels": labels},
        "Inf pixel": {"images": images.clone().index_fill_(0, torch.tensor([2]), math.inf), "labels": labels},
        "integer images": {"images": images.to(torch.int32), "labels": labels},
        "3-D images": {"images": images[:, 0], "labels": labels},
        "no images": {"labels": labels},
        "no labels": {"images": images},
        "empty set": {"images": images[:0], "labels": labels[:0]},
        "label = num_classes": {"images": images, "labels": torch.tensor([0, 0, 1, 1, 2, 3])},
        "negative label": {"images": images, "labels": torch.tensor([0, 0, 1, 1, 2, -1])},
        "int8 labels": {"images": images, "labels": labels.to(torch.int8)},
        "labels too few": {"images": images, "labels": labels[:4]},
        "soft labels of 2 classes": {"images": images, "labels": torch.rand(6, 2)},
        "NaN soft label": {"images": images, "labels": torch.full((6, 3), NAN)},
        "unknown tensor": {"images": images, "labels": labels, "weights": torch.zeros(2)},
        "extra not listed": {"images": images, "labels": labels, "extras.indices": torch.arange(6)},
        "2-D labels of ints": {"images": images, "labels": labels.view(6, 1)},
    }
    for description, tensors in bad_tensors.items():
        cases.append((description, encode_set_file({k: v.contiguous() for k, v in tensors.items()}, metadata)))
    cases.append(("listed extra missing", encode_set_file(valid_sets()[0]._tensors(), {**metadata, "extras": ["x"]})))
    raw = valid_sets()[0].to_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_length])
    text = header["__metadata__"][METADATA_KEY]
    headers: dict[str, Any] = {
        "header not an object": [1, 2],
        "no metadata": {k: v for k, v in header.items() if k != "__metadata__"},
        "metadata not a string map": {**header, "__metadata__": {METADATA_KEY: 5}},
        "metadata deeply nested": {**header, "__metadata__": {METADATA_KEY: "[" * 5000 + "]" * 5000}},
        "metadata NaN literal": {
            **header,
            "__metadata__": {METADATA_KEY: text.replace('"learned_lr": null', '"learned_lr": NaN')},
        },
        "metadata repeated key": {**header, "__metadata__": {METADATA_KEY: text[:-1] + ', "num_classes": 3}'}},
        "metadata huge": {
            **header,
            "__metadata__": {METADATA_KEY: json.dumps({**json.loads(text), "provenance": {"x": "a" * (17 * 2**20)}})},
        },
        "metadata not JSON": {**header, "__metadata__": {METADATA_KEY: "{not json"}},
        "dtype unknown": {**header, "images": {**header["images"], "dtype": "F99"}},
        "shape larger than data": {**header, "images": {**header["images"], "shape": [600, 1, 8, 8]}},
        "offsets past the end": {**header, "labels": {**header["labels"], "data_offsets": [0, 10**9]}},
    }
    data = raw[8 + header_length :]
    for description, value in headers.items():
        encoded = json.dumps(value).encode()
        cases.append((description, len(encoded).to_bytes(8, "little") + encoded + data))
    cases.append(
        ("deep header", (lambda h: len(h).to_bytes(8, "little") + h)(with_raw(header, "x", deep_text(10_000))) + data)
    )
    for length in (0, 2**63, header_length + len(data) + 1):
        cases.append((f"header length {length}", length.to_bytes(8, "little") + raw[8:]))
    cases.append(("trailing bytes", raw + b"\x00" * 16))
    cases.append(("a pickle", pickle.dumps({"images": [1, 2, 3]})))
    cases += garbage(rng, 40)
    return cases


def test_fuzz_set_files(tmp_path: Path) -> None:
    rng = random.Random(18)
    count = refused_files(".safetensors", set_file_cases(rng), SyntheticSet.load, tmp_path / "sets")
    valid = valid_sets()[0].to_bytes()
    refused = flipped_files(
        valid, lambda p: SyntheticSet.load(p.rename(p.with_suffix(".safetensors"))), tmp_path / "flips", rng, 100
    )
    print(f"set files: {count} bad inputs refused; byte flips: {refused}/100 refused, the rest loaded")


class _RunsCode:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("code ran",))


def test_fuzz_torch_set_files(tmp_path: Path) -> None:
    rng = random.Random(19)
    base = valid_sets()[0]
    tensors, metadata = base._tensors(), base._metadata()

    def torch_bytes(payload: Any) -> bytes:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()

    cases: list[tuple[str, bytes]] = []
    for name, values in BAD_METADATA.items():
        for value in values:
            text = json.dumps({**metadata, name: value})
            cases.append((f"{name}={str(value)[:40]}", torch_bytes({"tensors": tensors, "metadata": text})))
    payloads = {
        "a list": [1, 2],
        "no metadata": {"tensors": tensors},
        "metadata a dict": {"tensors": tensors, "metadata": metadata},
        "tensors a list": {"tensors": list(tensors.values()), "metadata": json.dumps(metadata)},
        "tensor names ints": {"tensors": {1: base.images}, "metadata": json.dumps(metadata)},
        "non-tensor values": {"tensors": {"images": [1.0], "labels": [0]}, "metadata": json.dumps(metadata)},
        "code": {"tensors": tensors, "metadata": _RunsCode()},
    }
    for description, payload in payloads.items():
        cases.append((description, pickle.dumps(payload) if description == "code" else torch_bytes(payload)))
    raw = torch_bytes({"tensors": tensors, "metadata": json.dumps(metadata)})
    cases += truncations(raw, rng, 60)
    cases += garbage(rng, 60)
    count = refused_files(".pt", cases, SyntheticSet.load, tmp_path / "pt")
    print(f".pt set files: {count} bad inputs refused")


# -- graph sets ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph_sets() -> list[GraphSet]:
    train = load_dataset("mutag", seed=0).train
    selection = graph_set_of(train.subset(torch.arange(12)), budget=Budget(ipc=6))
    forest = create_method("mirage", hops=2, support=0.5, drop_shared=False).condense(
        train, Budget(fraction=0.1), seed=0
    )
    return [selection, forest]


def _layout(raw: bytes) -> dict[str, tuple[int, int, int]]:
    """``name -> (offset, itemsize, size)`` of every array of a graph-set file."""
    from data.graphs._format import _ARRAYS, _HEADER

    offset = 4 + struct.calcsize(_HEADER)
    count = raw[offset]
    offset += 1
    descriptors = [struct.unpack("<BBI", raw[offset + 6 * i : offset + 6 * i + 6]) for i in range(count)]
    offset += 6 * count
    layout = {}
    for code, itemsize, size in descriptors:
        layout[_ARRAYS[code]] = (offset, itemsize, size)
        offset += itemsize * size
    return layout


def graph_set_cases(sets: list[GraphSet], rng: random.Random) -> list[tuple[str, bytes]]:
    from data.graphs._format import _HEADER

    cases: list[tuple[str, bytes]] = []
    for graph_set in sets:
        raw = graph_set.to_bytes()
        kind = graph_set.kind
        header_end = 4 + struct.calcsize(_HEADER)
        names = ("version", "kind", "sampling", "classes", "node_labels", "edge_labels", "units", "nodes")
        header = dict(zip(names, struct.unpack(_HEADER, raw[4:header_end]), strict=True))
        units = header["units"]

        def with_header(raw: bytes = raw, header: dict[str, int] = header, **changes: int) -> bytes:
            fields = {**header, **changes}
            return raw[:4] + struct.pack(_HEADER, *fields.values()) + raw[4 + struct.calcsize(_HEADER) :]

        for changes in (
            {"version": 0},
            {"version": 2},
            {"version": 255},
            {"kind": 2},
            {"kind": 255},
            {"sampling": 2},
            {"sampling": 200},
            {"classes": 0},
            {"classes": 1},
            {"node_labels": 0},
            {"node_labels": 1},
            {"units": units + 1},
            {"units": 0},
            {"units": 2**32 - 1},
        ):
            cases.append((f"{kind}: header {changes}", with_header(**changes)))
        cases.append((f"{kind}: magic", b"XXXX" + raw[4:]))
        cases.append((f"{kind}: trailing byte", raw + b"\x00"))
        count_offset = header_end
        for count in (0, raw[count_offset] - 1, raw[count_offset] + 1, 255):
            cases.append(
                (f"{kind}: {count} descriptors", raw[:count_offset] + bytes([count]) + raw[count_offset + 1 :])
            )
        for index in range(raw[count_offset]):
            at = count_offset + 1 + 6 * index
            code, itemsize, size = struct.unpack("<BBI", raw[at : at + 6])
            for bad in (
                (code, 3, size),
                (code, 0, size),
                (code, 16, size),
                (200, itemsize, size),
                (code, itemsize, 2**32 - 1),
                (code, itemsize, size + 1),
                (raw[count_offset + 1 + 6 * ((index + 1) % raw[count_offset])], itemsize, size),
            ):
                cases.append(
                    (f"{kind}: descriptor {index} -> {bad}", raw[:at] + struct.pack("<BBI", *bad) + raw[at + 6 :])
                )
        for name, (offset, itemsize, size) in _layout(raw).items():
            if size == 0:
                continue
            top = (1 << (8 * itemsize)) - 1
            for position in {0, size - 1}:
                at = offset + position * itemsize
                patched = raw[:at] + top.to_bytes(itemsize, "little") + raw[at + itemsize :]
                if name not in ("node_degrees", "counts"):  # any value of those is a valid graph set
                    cases.append((f"{kind}: {name}[{position}] = {top}", patched))
        cases += truncations(raw, rng, 40)
    cases += garbage(rng, 30)
    return cases


def test_fuzz_graph_sets(tmp_path: Path, graph_sets: list[GraphSet]) -> None:
    rng = random.Random(20)
    count = refused_files(".graphset", graph_set_cases(graph_sets, rng), GraphSet.load, tmp_path / "graphs")
    refused = sum(
        flipped_files(s.to_bytes(), GraphSet.load, tmp_path / f"flips{i}", rng, 60) for i, s in enumerate(graph_sets)
    )
    print(f"graph sets: {count} bad inputs refused; byte flips: {refused}/120 refused, the rest loaded")


# -- records -------------------------------------------------------------------------------------


def valid_record() -> dict[str, Any]:
    return ResultRecord(
        cell_key="00000000000000ab",
        method="herding",
        family="selection",
        label_type="hard",
        method_config={"lr": 0.01},
        dataset="digits",
        dataset_fingerprint="0856650b1ee8e27c",
        ipc=10,
        fraction=None,
        protocol="fast",
        protocol_config={"epochs": 5},
        seed=0,
        results={"convnet3": ModelResult.from_accuracies([0.5, 0.6])},
        costs=RecordCosts(1.5, 2048, 3.0, 4096, 100),
        versions={"python": "3.11.7"},
        git_revision=None,
        device="cpu",
        created="2026-11-28T01:00:00+00:00",
        set_path="sets/digits/herding/00000000000000ab.safetensors",
    ).to_dict()


BAD_RECORD: dict[str, list[Any]] = {
    "schema": ["x", None, 1],
    "schema_version": [2, "1", None, 1.5, True, 0],
    "cell_key": ["XYZ", "", 5, None, "../ab", "00AB"],
    "method": ["../etc", "a/b", "", ".hidden", 5, None, "a b", "..", "x\x00"],
    "dataset": ["../etc", "a\\b", "", 5, None, "~root"],
    "family": ["other", None, 1, ""],
    "label_type": ["medium", None, 3],
    "method_config": ["x", [1], None, deep(100), 3],
    "protocol_config": ["x", [1], None, deep(100)],
    "dataset_fingerprint": ["", 5, None, []],
    "ipc": [0, -1, 1.5, "10", True, None, []],
    "fraction": [0.5, 0, 2, "0.5"],
    "protocol": ["", None, 3, {}],
    "seed": [1.5, "0", None, True, []],
    "results": [
        {},
        [],
        None,
        "x",
        {"convnet3": {}},
        {"convnet3": {"accuracies": []}},
        {"convnet3": {**ModelResult.from_accuracies([0.5]).to_dict(), "accuracies": [1.5]}},
        {"convnet3": {**ModelResult.from_accuracies([0.5]).to_dict(), "mean": 0.9}},
        {"convnet3": {**ModelResult.from_accuracies([0.5]).to_dict(), "extra": 1}},
    ],
    "costs": [
        None,
        {},
        [],
        {"distill_seconds": "1"},
        {**RecordCosts(1, 2, 3, 4, 5).to_dict(), "num_images": -5},
        {**RecordCosts(1, 2, 3, 4, 5).to_dict(), "x": 1},
    ],
    "versions": ["x", {"a": 1}, [], None],
    "git_revision": [5, "", []],
    "device": ["", None, 5],
    "created": ["yesterday", 5, None, "", "2026-13-45"],
    "set_path": ["../x", "/etc/passwd", "", 5, "sets/../../x", "C:\\x", "sets\\..\\..\\x", "..", []],
    "capped_class_counts": [[], [-1], "x", [10**9], [1.5], {}],
}


def record_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    record = valid_record()
    text = json.dumps(record, indent=2)
    cases: list[tuple[str, bytes]] = []
    for name, values in BAD_RECORD.items():
        for value in values:
            cases.append((f"{name}={str(value)[:40]}", json.dumps({**record, name: value}).encode()))
    for name in record:
        cases.append((f"no {name}", json.dumps({k: v for k, v in record.items() if k != name}).encode()))
    cases.append(("unknown key", json.dumps({**record, "extra": 1}).encode()))
    cases += truncations(text.encode(), rng, 40, keep_at_most=text.rindex("}"))
    cases += [
        ("NaN accuracy", text.replace('"mean": 0.55', '"mean": NaN').encode()),
        ("Infinity", text.replace('"seed": 0', '"seed": Infinity').encode()),
        ("repeated key", text.replace('"seed": 0', '"seed": 0, "seed": 1').encode()),
        ("deeply nested", b"[" * 100_000 + b"]" * 100_000),
        ("deep in method_config", with_raw(record, "method_config", '{"a": ' + deep_text(5000) + "}")),
        ("huge", json.dumps({**record, "device": "x" * (5 * 2**20)}).encode()),
        ("not UTF-8", b"\xff\xfe" + text.encode("utf-16-le")),
        ("BOM", "\ufeff".encode() + text.encode()),
        ("a list", b"[1, 2]"),
        ("empty", b""),
        ("null", b"null"),
    ]
    cases += garbage(rng, 20)
    return cases


def test_fuzz_records(tmp_path: Path) -> None:
    rng = random.Random(21)
    count = refused_files(".json", record_cases(rng), read_record, tmp_path / "records")
    refused = flipped_files(json.dumps(valid_record()).encode(), read_record, tmp_path / "flips", rng, 100)
    print(f"records: {count} bad inputs refused; byte flips: {refused}/100 refused, the rest loaded")


# -- teacher weights -----------------------------------------------------------------------------


def test_fuzz_teacher_weights(tmp_path: Path) -> None:
    rng = random.Random(22)

    def new_model() -> torch.nn.Module:
        return create_model("convnet3", in_channels=1, num_classes=10, image_size=(8, 8))

    state = {k: v.contiguous() for k, v in new_model().state_dict().items()}
    raw = save_safetensors_bytes(state)
    first = next(iter(state))
    floating = next(k for k, v in state.items() if v.is_floating_point())
    bad_states: dict[str, dict[str, torch.Tensor]] = {
        "missing tensor": {k: v for k, v in state.items() if k != first},
        "unknown tensor": {**state, "extra.weight": torch.zeros(1)},
        "wrong shape": {**state, floating: torch.zeros(3)},
        "NaN weight": {**state, floating: torch.full_like(state[floating], NAN)},
        "Inf weight": {**state, floating: torch.full_like(state[floating], math.inf)},
        "empty": {},
    }
    cases: list[tuple[str, bytes]] = [(d, save_safetensors_bytes(s)) for d, s in bad_states.items()]
    cases += truncations(raw, rng, 140)
    cases += garbage(rng, 60)
    header_length = int.from_bytes(raw[:8], "little")
    cases.append(
        (
            "deep header",
            (lambda h: len(h).to_bytes(8, "little") + h)(b"[" * 5000 + b"]" * 5000) + raw[8 + header_length :],
        )
    )
    cases.append(("header length huge", (2**62).to_bytes(8, "little") + raw[8:]))
    count = refused_files(".safetensors", cases, lambda p: load_weights(new_model(), p), tmp_path / "weights")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    pt_cases = [
        ("code", pickle.dumps(_RunsCode())),
        ("a list", pickle.dumps([1])),
        ("non-tensors", pickle.dumps({"a": 1})),
    ]
    pt_cases += truncations(buffer.getvalue(), rng, 140)
    pt_cases += garbage(rng, 60)
    pt_count = refused_files(".pt", pt_cases, lambda p: load_weights(new_model(), p), tmp_path / "pt")
    print(f"teacher weights: {count} safetensors and {pt_count} .pt bad inputs refused")


# -- option values -------------------------------------------------------------------------------


def bad_values(annotation: Any) -> Iterator[Any]:
    """Values that no option of ``annotation`` accepts."""
    arguments = typing.get_args(annotation)
    optional = type(None) in arguments
    base = next((a for a in arguments if a is not type(None)), annotation) if arguments else annotation
    if not optional:
        yield None
    yield {"nested": 1}
    if base in (int, float):
        yield from ("3", [1], True, NAN, math.inf, -math.inf, -1)
        if base is int:
            yield from (1.5, 10**30)  # beyond 64 bits
    elif base is bool:
        yield from (3, "yes", 1.0)
    elif base is str:
        yield from (3, [1], 1.5)


def test_fuzz_option_values() -> None:
    refused = 0
    accepted: list[str] = []
    for method in ("dm", "mtt", "herding", "random", "mirage", "sre2l", "rded", "ccs"):
        config = type(create_method(method).config)
        for name, annotation in field_types(config).items():
            if typing.get_origin(annotation) is typing.Literal:
                values: list[Any] = ["not-a-choice", 3, None]
            else:
                values = list(bad_values(annotation))
            for value in values:
                try:
                    create_method(method, **{name: value})
                except InputError:
                    refused += 1
                else:
                    accepted.append(f"{method}.{name}={value!r}")
        with pytest.raises(InputError):
            create_method(method, no_such_option=1)
        refused += 1
    base = get_protocol("fast")
    integer_fields = {"num_models", "recipe.epochs", "recipe.batch_size", "full_data_epochs"}
    for change in (
        "num_models",
        "recipe.epochs",
        "recipe.lr",
        "recipe.momentum",
        "recipe.weight_decay",
        "recipe.batch_size",
        "recipe.decay_at",
        "full_data_epochs",
        "use_learned_lr",
        "augmentation",
    ):
        for value in (None, "x", NAN, -1, [1], {"a": 1}, 10**30 if change in integer_fields else math.inf):
            if change == "augmentation" and value is None:
                continue
            try:
                derive_protocol(base, {change: value})
            except InputError:
                refused += 1
            else:
                accepted.append(f"protocol.{change}={value!r}")
    assert not accepted, accepted
    assert refused >= PER_KIND
    print(f"option values: {refused} bad inputs refused")
