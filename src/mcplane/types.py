"""Parameter types for tools, for checks the input schema itself should carry.

``NonBlank``: a string that must contain something other than whitespace (it is stripped first),
as the seed asks of identifiers and free-text fields. ISO 8601 date-times need no special type:
annotate a parameter ``datetime`` and the input schema says ``format: date-time``, a string
like ``2026-11-24T09:00:00Z`` is parsed, and anything else answers ``invalid_arguments``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

__all__ = ["NonBlank"]

NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
