"""What an artifact was built from: settings records, fingerprints, and refusing stale reuse.

Tooling: not taught (what lets a stage refuse a stale artifact).

Every stage writes, with its outputs, the settings that determine them (the profile fields the
stage reads, the teacher, the student, the data, the upstream artifacts). A finished or
interrupted stage is reused only when the settings asked for now are the recorded ones;
otherwise :class:`StaleArtifactError` names each difference (``field: old -> new``).
Fields that change only how a run is watched (logging, device, evaluation batch size) are
left out of the record, so changing them never invalidates anything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .errors import CourseError

SHORT = 12  # hex digits of a fingerprint shown in messages


class StaleArtifactError(CourseError, RuntimeError):
    """An artifact on disk was built from other settings than the ones asked for now."""


def fingerprint_tensors(tensors: Mapping[str, torch.Tensor] | nn.Module) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict (or a module's)."""
    if isinstance(tensors, nn.Module):
        tensors = tensors.state_dict()
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fingerprint_dataset(dataset: Any) -> dict[str, Any]:
    """Rows and a sha256 of a ``datasets.Dataset``'s content (its selected rows, every column)."""
    import pyarrow as pa

    table = dataset.with_format("arrow")[:] if len(dataset) else dataset.data.table.slice(0, 0)
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(table.column_names)).encode())
    for name in sorted(table.column_names):
        # Arrow's IPC bytes of one column: its values, independent of how the table was sliced.
        sink = pa.BufferOutputStream()
        column = table.select([name]).combine_chunks()
        with pa.ipc.new_stream(sink, column.schema) as writer:
            writer.write_table(column)
        digest.update(sink.getvalue().to_pybytes())
    return {"rows": len(dataset), "sha256": digest.hexdigest()}


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:SHORT]  # a sha256: its start is enough to tell two apart
    return "(none)" if value is None else json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


def _differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``field: old -> new`` for every setting that differs (nested fields as ``a.b``)."""
    old, new = _flatten(recorded), _flatten(json.loads(json.dumps(wanted)))  # JSON-normalised, as stored
    return [f"{k}: {_show(old.get(k))} -> {_show(new.get(k))}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


#: Profile fields renamed since artifacts were first recorded: a record that holds the old name is
#: read with the new one, so a renaming alone never makes an artifact stale.
RENAMED_FIELDS = {"task_intermediate_epochs": "intermediate_epochs", "task_lr_intermediate": "intermediate_lr",
                  "task_prediction_epochs": "prediction_epochs", "task_lr_prediction": "prediction_lr"}


def _with_current_names(recorded: Mapping[str, Any]) -> Mapping[str, Any]:
    """``recorded`` with renamed profile fields under their current names (``task_batch_size``, once
    shared by both task-distillation steps, becomes the batch size of the step the record is of)."""
    fields = recorded.get("profile")
    if not isinstance(fields, Mapping) or not set(fields) & {*RENAMED_FIELDS, "task_batch_size"}:
        return recorded
    step = "intermediate" if "intermediate" in str(recorded.get("stage", "")) else "prediction"
    names = {**RENAMED_FIELDS, "task_batch_size": f"{step}_batch_size"}
    return {**recorded, "profile": {names.get(k, k): v for k, v in fields.items()}}


def rebuild_hint(folder: str | Path) -> str:
    """What to do about an artifact in ``folder`` that cannot be reused (stale, changed or damaged)."""
    return (f"delete {folder} or rebuild it (rebuild=True in Python, --rebuild on the command line: "
            "python -m tinybert_lib run STAGE --rebuild)")


def check_reuse(folder: str | Path, recorded: Mapping[str, Any] | None, wanted: Mapping[str, Any], what: str) -> None:
    """Raise :class:`StaleArtifactError` unless ``recorded`` settings are the ``wanted`` ones."""
    how = rebuild_hint(folder)
    if recorded is None:
        raise StaleArtifactError(
            f"{what} in {folder} has no record of the settings that built it (written by an older version of the "
            f"course), so it cannot be checked against the ones asked for now; {how}.")
    diff = _differences(_with_current_names(recorded), wanted)
    if diff:
        raise StaleArtifactError(
            f"{what} in {folder} was built with other settings than the ones asked for now: "
            + "; ".join(diff) + f". To build it with the new settings, {how}.")


def profile_fields(profile: Any, names: Iterable[str]) -> dict[str, Any]:
    """The named fields of a profile, as a record."""
    return {name: getattr(profile, name) for name in names}
