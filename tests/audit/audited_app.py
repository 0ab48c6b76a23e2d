"""A plane with the audit slot filled, served by ``mcplane run`` in the HTTP end-to-end test.

``MCPLANE_TEST_AUDIT_FILE`` names the JSONL audit file.
"""

from __future__ import annotations

import os

from mcplane import Plane
from mcplane.audit import JsonlSink
from mcplane.middleware.audit import AuditMiddleware

plane = Plane("audited")
plane.pipeline.set("audit", AuditMiddleware(JsonlSink(os.environ["MCPLANE_TEST_AUDIT_FILE"])))


@plane.tool()
def add(a: int, b: int) -> int:
    return a + b
