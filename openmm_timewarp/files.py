"""Files written so that an interruption never leaves a half-written one, and their checksums.

Every file the package writes for later reading (progress records, checkpoints, model files, caches)
goes through :func:`write_atomically`: the bytes go to a temporary file beside the target, are
flushed to disk, and replace the target in one rename.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[bytes]], Any] | bytes | str
) -> Path:
    """Write ``path`` in one rename: ``write`` is the content, or a function given the open file."""
    path = Path(path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            if callable(write):
                write(handle)
            else:
                handle.write(write.encode() if isinstance(write, str) else write)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_json_atomically(path: str | os.PathLike, record: Any, sort_keys: bool = False) -> Path:
    """Write ``record`` as indented JSON with :func:`write_atomically`."""
    return write_atomically(path, json.dumps(record, indent=2, sort_keys=sort_keys) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
