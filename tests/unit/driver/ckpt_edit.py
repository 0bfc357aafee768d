"""A copy of a safetensors checkpoint with metadata entries replaced (the tensors as they
were): how the driver tests make edited or hostile checkpoints."""

from __future__ import annotations

from pathlib import Path


def with_metadata(src: Path, dst: Path, **changes: str) -> Path:
    """A copy of the checkpoint with metadata entries replaced, the tensors (and so the
    checkpoint's digest) as they were: what anyone can do to a file they hand over."""
    import json
    raw = src.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["__metadata__"].update(changes)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    dst.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    return dst
