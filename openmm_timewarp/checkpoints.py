"""Training checkpoints that hold data only and carry a checksum.

A checkpoint is a dictionary of tensors and plain Python values (numbers, strings, lists,
dictionaries). It is written with ``torch.save`` into a payload, and the file holds that payload
with its SHA-256, so :func:`load_checkpoint` reads it with ``torch.load(..., weights_only=True)``
(no pickled code runs, whoever wrote the file) and refuses a truncated or altered file with an
error that names it.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from openmm_timewarp.files import write_atomically

CHECKPOINT_FORMAT = 1


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (:func:`~openmm_timewarp.files.write_atomically`)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    record = {
        "format": CHECKPOINT_FORMAT,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    write_atomically(path, lambda handle: torch.save(record, handle))


def load_checkpoint(
    path: str | os.PathLike, map_location: torch.device | str | None = None
) -> dict:
    """Read a checkpoint that :func:`save_checkpoint` wrote; ``ValueError`` naming the file if
    it is not one, is truncated, or its checksum does not match."""
    path = Path(path)
    unreadable = (
        f"{path} is not a checkpoint this version of openmm-timewarp can read (truncated, "
        "corrupt, or written by an older version); remove it, or use a new output folder"
    )
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, pickle and zip errors alike
        raise ValueError(f"{unreadable}: {error}") from error
    if (
        not isinstance(record, dict)
        or record.get("format") != CHECKPOINT_FORMAT
        or not isinstance(record.get("payload"), torch.Tensor)
    ):
        raise ValueError(unreadable)
    payload = record["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != record.get("sha256"):
        raise ValueError(f"{path} is corrupt: its checksum does not match its content")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{unreadable}: {error}") from error
    if not isinstance(state, dict):
        raise ValueError(unreadable)
    return state


def load_model_state(model: torch.nn.Module, state: dict, path: str | os.PathLike) -> None:
    """``model.load_state_dict(state)``, with an error naming ``path`` if it is another model's."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} holds the parameters of another model (other family, size or molecule): "
            f"{str(error).splitlines()[0]}; use a new output folder or the same settings"
        ) from error
