"""A validating reader for the safetensors format.

Layout: an 8-byte little-endian header length N, N bytes of JSON mapping tensor names to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the
header), then the data. Every field is checked before any tensor is touched, so a truncated
or hostile file raises ModelFormatError naming the file and the tensor instead of reading
out of bounds.

Tensors are read with read(2) into arrays of their own rather than memory-mapped: a file
cut short by another process while it is being loaded then reads short, which raises
ModelFormatError, where a mapped page past the new end would kill the process with SIGBUS.
Reading is no slower: each tensor is read once, sequentially, straight into its array.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..files import open_regular

# Real headers are kilobytes; this bounds what a corrupt length field can make us read.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# safetensors dtype -> (numpy dtype of the stored bits, bytes per element).
# bfloat16 has no numpy dtype: its bits are read as uint16 and widened by to_float32.
DTYPES: dict[str, tuple[np.dtype[Any], int]] = {
    "F64": (np.dtype("<f8"), 8),
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "I16": (np.dtype("<i2"), 2),
    "I8": (np.dtype("i1"), 1),
    "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("?"), 1),
}
FLOAT_DTYPES = ("F32", "F16", "BF16")
# Bytes per element of the format's other dtypes, which the engine never reads: a tensor of
# one (a quantizer's scales, an fp8 copy) is checked for size and otherwise ignored, as
# transformers ignores it. A dtype in neither table is a format newer than this reader.
OTHER_DTYPE_BYTES = {"U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
                     "C64": 8}


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: json.loads alone keeps the last of two entries of one name."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute offsets in the file
    end: int


def _clipped(text: str, most: int = 200) -> str:
    return text if len(text) <= most else text[:most] + "..."


class SafetensorsFile:
    """An open safetensors file. Use as a context manager, or call close()."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            fd, _ = open_regular(self.path, ModelFormatError)
        except FileNotFoundError:
            raise ModelFormatError(f"{self.path}: file not found") from None
        # Unbuffered: tensors are read straight into their arrays.
        self._file = os.fdopen(fd, "rb", buffering=0)
        try:
            self.tensors, self.metadata = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _fail(self, message: str) -> ModelFormatError:
        return ModelFormatError(f"{self.path}: {message}")

    def _read_header(self) -> tuple[dict[str, TensorInfo], dict[str, str]]:
        size = os.fstat(self._file.fileno()).st_size
        prefix = self._read_at(0, 8)
        if len(prefix) < 8:
            raise self._fail(f"truncated: {size} bytes, too short for a safetensors header")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            raise self._fail(
                f"header length {header_len} runs past the end of the file ({size} bytes)"
            )
        if header_len > MAX_HEADER_BYTES:
            raise self._fail(f"header length {header_len} exceeds {MAX_HEADER_BYTES} bytes")
        raw = self._read_at(8, header_len)
        if len(raw) < header_len:
            raise self._fail(f"the file shrank to {len(raw) + 8} bytes while its header was read")
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            raise self._fail(f"header names {exc.args[0]!r} twice") from None
        # ValueError covers JSONDecodeError, UnicodeDecodeError and integers too long to
        # convert (sys.set_int_max_str_digits); RecursionError, nesting too deep.
        except (ValueError, RecursionError) as exc:
            raise self._fail(f"header is not valid JSON ({exc})") from None
        if not isinstance(header, dict):
            raise self._fail(f"header must be a JSON object, got {type(header).__name__}")

        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise self._fail("__metadata__ must be an object of strings")

        data_start = 8 + header_len
        data_size = size - data_start
        tensors: dict[str, TensorInfo] = {}
        for name, entry in header.items():
            tensors[name] = self._parse_entry(name, entry, data_start, data_size)

        spans = sorted((t.begin, t.end, t.name) for t in tensors.values() if t.end > t.begin)
        for (_, end_a, name_a), (begin_b, _, name_b) in pairwise(spans):
            if begin_b < end_a:
                raise self._fail(f"tensors {name_a!r} and {name_b!r} overlap")
        return tensors, metadata

    def _parse_entry(self, name: str, entry: Any, data_start: int, data_size: int) -> TensorInfo:
        where = f"tensor {name!r}"
        if not isinstance(entry, dict):
            raise self._fail(f"{where}: entry must be an object")
        dtype = entry.get("dtype")
        if not isinstance(dtype, str) or (dtype not in DTYPES and dtype not in OTHER_DTYPE_BYTES):
            raise self._fail(f"{where}: unsupported dtype {dtype!r}")
        shape = entry.get("shape")
        # Bounded too: a size past any file's is wrong anyway, and a product of thousands
        # of digits could not even be printed (Python's int-to-str limit).
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape
        ):
            raise self._fail(
                f"{where}: shape must be a list of integers in [0, 2**63), got "
                f"{_clipped(repr(shape))}"
            )
        offsets = entry.get("data_offsets")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise self._fail(f"{where}: data_offsets must be [begin, end], got {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end:
            raise self._fail(f"{where}: data_offsets {offsets} are not increasing from 0")
        if end > data_size:
            raise self._fail(
                f"{where}: data_offsets {offsets} run past the end of the data ({data_size} bytes);"
                " the file may be truncated"
            )
        item = DTYPES[dtype][1] if dtype in DTYPES else OTHER_DTYPE_BYTES[dtype]
        if math.prod(shape) >= 2**63:
            raise self._fail(f"{where}: shape {_clipped(repr(tuple(shape)))} holds 2**63 "
                             "elements or more")
        expected = math.prod(shape) * item
        if end - begin != expected:
            raise self._fail(
                f"{where}: holds {end - begin} bytes but dtype {dtype} x shape {tuple(shape)}"
                f" needs {expected}"
            )
        return TensorInfo(name, dtype, tuple(shape), data_start + begin, data_start + end)

    def _read_at(self, offset: int, size: int) -> bytes:
        """Up to size bytes at offset: fewer only at the end of the file."""
        out = bytearray(size)
        got = self._read_into(offset, memoryview(out))
        del out[got:]
        return bytes(out)

    def _read_into(self, offset: int, buffer: memoryview) -> int:
        """Fills buffer from offset on; returns the bytes read, fewer only at the end of the
        file. One read(2) returns at most ~2 GiB, so large tensors take several."""
        self._file.seek(offset)
        done = 0
        while done < len(buffer):
            try:
                got = self._file.readinto(buffer[done:])
            except OSError as exc:
                raise self._fail(f"read failed at byte {offset + done} ({exc.strerror})") from None
            if not got:
                break
            done += got
        return done

    def array(self, name: str, scratch: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
        """The tensor's stored bits, read into an array of its own, or into the start of
        `scratch` (bytes) when it is large enough: a view of it, valid until its next use."""
        info = self.tensors[name]
        if info.dtype not in DTYPES:
            raise self._fail(f"tensor {name!r}: dtype {info.dtype} cannot be read as an array")
        dtype, _ = DTYPES[info.dtype]
        size = info.end - info.begin
        if scratch is not None and size and scratch.nbytes >= size:
            out = scratch.reshape(-1).view(np.uint8)[:size].view(dtype).reshape(info.shape)
        else:
            out = np.empty(info.shape, dtype=dtype)
        self._read_tensor_part(info, info.begin, out.reshape(-1).view(np.uint8))
        return out

    def to_float32(
        self, name: str, scratch: np.ndarray[Any, Any] | None = None
    ) -> np.ndarray[Any, Any]:
        """The tensor as float32: the bits read for F32 data (into scratch, see array), a
        converted copy for F16/BF16."""
        return _widened(self._float_info(name).dtype, self.array(name, scratch))

    def float32_chunks(self, name: str, elements: int = 1 << 20) -> Iterator[np.ndarray[Any, Any]]:
        """The tensor as float32, flattened, at most `elements` at a time, each chunk valid
        until the next: to compare or scan a tensor without holding it whole."""
        info = self._float_info(name)
        dtype, _ = DTYPES[info.dtype]
        total = (info.end - info.begin) // dtype.itemsize
        buffer = np.empty(min(elements, total), dtype=dtype)
        for start in range(0, total, elements):
            part = buffer[: min(elements, total - start)]
            self._read_tensor_part(info, info.begin + start * dtype.itemsize,
                                   part.view(np.uint8))
            yield _widened(info.dtype, part)

    def _float_info(self, name: str) -> TensorInfo:
        info = self.tensors[name]
        if info.dtype not in FLOAT_DTYPES:
            raise self._fail(
                f"tensor {name!r}: dtype {info.dtype} is not a floating-point weight type"
                f" (supported: {', '.join(FLOAT_DTYPES)})"
            )
        return info

    def _read_tensor_part(self, info: TensorInfo, offset: int, out: np.ndarray[Any, Any]) -> None:
        """Fills out (bytes) from offset, inside tensor info."""
        got = self._read_into(offset, out.data) if out.nbytes else 0
        if got < out.nbytes:
            # Checked against the header when the file was opened: it was cut short since.
            raise self._fail(
                f"tensor {info.name!r}: the file ends at byte {offset + got}, before the "
                f"tensor's end at {info.end}; it was truncated while being read"
            )

    def fileno(self) -> int:
        """The open file's descriptor, for the engine to read tensors from with pread."""
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _widened(dtype: str, bits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Stored floats as float32: F32 bits as they are, F16/BF16 converted."""
    if dtype == "F32":
        return bits
    if dtype == "F16":
        return bits.astype(np.float32)
    return (bits.astype(np.uint32) << 16).view(np.float32)
