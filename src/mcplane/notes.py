"""Facts a layer leaves on a call for the audit record: which rule denied it, what a guard found.

The layers inside the audit slot write them on the call's context as they decide; the audit
slot, outside them, can read them once the call is over and add them to the outcome record.
So the record says why a call was refused or changed while the wire answer does not. Notes hold
names and counts, never argument or result values::

    note(call.context, "denied_by", "refunds_under_limit")     # the authorize slot
    note(call.context, "guards", {"email": 2})                 # the guard slot
    note(call.context, "guard_action", "mask")
    notes_of(call.context)  # {"denied_by": ..., "guards": {...}, "guard_action": "mask"}

They live in the context's instance ``__dict__`` beside mcplane's other per-call fields (see
:mod:`mcplane.context`), so every layer sees the same ones whatever ``call.replace`` made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NOTES_KEY", "note", "notes_of"]

NOTES_KEY = "_mcplane_notes"


def note(context: Any, key: str, value: Any) -> None:
    """Record ``key: value`` for this call (a later note of the same key replaces it)."""
    fields = getattr(context, "__dict__", None)
    if isinstance(fields, dict):
        notes: dict[str, Any] = fields.setdefault(NOTES_KEY, {})  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        notes[key] = value


def notes_of(context: Any) -> Mapping[str, Any]:
    """What the layers noted for this call (empty when nothing was)."""
    fields = getattr(context, "__dict__", None)
    notes: Any = fields.get(NOTES_KEY) if isinstance(fields, dict) else None  # pyright: ignore[reportUnknownMemberType]
    return notes if isinstance(notes, dict) else {}  # pyright: ignore[reportUnknownVariableType]
