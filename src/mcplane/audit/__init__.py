"""The audit log: one hash-chained record per call, to a JSONL file or PostgreSQL.

- :mod:`.chain`: the record format and hash chain every sink writes and ``verify`` checks;
- :mod:`.entry`: what a record says about a call (no raw arguments, results or secrets);
- :mod:`.sink`, :mod:`.jsonl`, :mod:`.postgres`: the :class:`AuditSink` Protocol and its sinks;
- :mod:`.checkpoint`, :mod:`.keys`: signed checkpoints, which catch a truncated or replaced log;
- :mod:`.segments`: a JSONL log's segments (rotation) and side files;
- :mod:`.writer`: the failure policy (fail closed / open) and the retry buffer;
- :mod:`.verify`, :mod:`.completeness`: the chain, and the chain held against its checkpoints;
- :mod:`.commands`, :mod:`.export`: ``mcplane audit verify`` and ``mcplane audit export``.

The pipeline middleware is :class:`mcplane.middleware.audit.AuditMiddleware`.
"""

from mcplane.audit.chain import GENESIS, canonical, record_hash, seal
from mcplane.audit.checkpoint import ChainBroken, CheckpointOptions
from mcplane.audit.jsonl import AuditFileError, FsyncPolicy, JsonlSink
from mcplane.audit.postgres import PostgresSink
from mcplane.audit.sink import AuditSink
from mcplane.audit.verify import Problem, VerifyReport, verify_file, verify_lines, verify_postgres
from mcplane.audit.writer import AuditOptions, AuditWriter

__all__ = [
    "GENESIS",
    "AuditFileError",
    "AuditOptions",
    "AuditSink",
    "AuditWriter",
    "ChainBroken",
    "CheckpointOptions",
    "FsyncPolicy",
    "JsonlSink",
    "PostgresSink",
    "Problem",
    "VerifyReport",
    "canonical",
    "record_hash",
    "seal",
    "verify_file",
    "verify_lines",
    "verify_postgres",
]
