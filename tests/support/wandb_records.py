"""Read W&B's offline ``.wandb`` file back: records in LevelDB log framing, wandb protobufs."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

_BLOCK = 32768
_HEADER = 7  # ":W&B" + 2-byte magic + 1-byte version, then per record crc32, len, type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B log"
    pos, pending, payloads = _HEADER, b"", []
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            payloads.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            payloads.append(pending + chunk)
    return [wandb_internal_pb2.Record.FromString(p) for p in payloads]


def history(path: Path) -> list[dict]:
    """The logged rows, each a dict of key -> value (``_step`` included)."""
    rows = []
    for rec in read_records(path):
        if rec.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in rec.history.item
                }
            )
    return rows


def table(wandb_file: Path, row: dict, key: str) -> list[dict]:
    """The table logged under ``key`` in a history row, as one dict per table row.

    wandb 0.31 writes each logged table to ``files/media/table/<key>_<n>_<hash>.table.json``
    in the run directory (``{"columns": [...], "data": [[...], ...]}``, NaN as ``NaN``) and
    puts a ``table-file`` reference in the row: ``<key>/path`` relative to ``files/``, with
    ``<key>/nrows``, ``<key>/ncols`` and ``<key>/sha256``.
    """
    assert row[f"{key}/_type"] == "table-file", row.get(f"{key}/_type")
    path = Path(wandb_file).parent / "files" / row[f"{key}/path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == row[f"{key}/sha256"], path
    data = json.loads(path.read_text())
    assert len(data["data"]) == row[f"{key}/nrows"] and len(data["columns"]) == row[f"{key}/ncols"]
    return [dict(zip(data["columns"], r)) for r in data["data"]]
