"""uvicorn's ERROR for a client's non-UTF-8 WebSocket text frame becomes one short WARNING, rate
limited; every other record passes untouched. (End to end, against ``mcplane run``:
tests/fuzz/test_websocket_fuzz.py.)"""

from __future__ import annotations

import logging
import sys

from mcplane.observability.logs import ClientFaultFilter, install_server_log_filters


def _uvicorn_utf8_record() -> logging.LogRecord:
    exc_info = None
    try:
        b"\xff".decode()
    except UnicodeDecodeError:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, ClientFaultFilter.MESSAGE, None, exc_info, None
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_error_becomes_a_short_warning_without_a_traceback() -> None:
    record = _uvicorn_utf8_record()
    assert ClientFaultFilter().filter(record)
    assert (record.levelno, record.levelname) == (logging.WARNING, "WARNING")
    assert record.exc_info is None
    assert "not UTF-8" in record.getMessage()
    assert "1007" in record.getMessage()


def test_repeats_are_dropped_then_counted() -> None:
    clock = Clock()
    quiet = ClientFaultFilter(interval=10.0, clock=clock)
    assert quiet.filter(_uvicorn_utf8_record())
    assert not quiet.filter(_uvicorn_utf8_record())
    assert not quiet.filter(_uvicorn_utf8_record())
    clock.now += 10.0
    record = _uvicorn_utf8_record()
    assert quiet.filter(record)
    assert "(2 more not logged)" in record.getMessage()


def test_other_records_pass_unchanged() -> None:
    quiet = ClientFaultFilter()
    record = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application\n", None, None
    )
    assert quiet.filter(record)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "Exception in ASGI application\n"


def test_installed_once_on_uvicorns_error_logger() -> None:
    target = logging.getLogger("uvicorn.error")
    before = list(target.filters)
    try:
        install_server_log_filters()
        install_server_log_filters()
        assert sum(isinstance(f, ClientFaultFilter) for f in target.filters) == 1
    finally:
        target.filters[:] = before
