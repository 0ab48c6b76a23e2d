"""Secret references in configuration, resolved at start, refreshed on an interval, never logged.

A config string may hold references, alone or inside other text::

    ${env:NAME}               the environment variable NAME
    ${file:PATH}              the file's text, one trailing newline removed (relative to base_dir)
    ${vault:MOUNT/PATH#KEY}   KEY of the HashiCorp Vault KV v2 secret PATH on mount MOUNT
                              (GET /v1/MOUNT/data/PATH); Vault from VaultSettings or
                              VAULT_ADDR / VAULT_TOKEN / VAULT_NAMESPACE
    $${...}                   a literal "${...}"

:meth:`Secrets.resolve` turns each string holding a reference into a :class:`Secret` whose
``repr``/``str``/``format`` never show the value (``.get()`` does). :meth:`Secrets.refresh`
re-reads every reference and updates those same ``Secret`` objects in place, so holders see a
rotated value on their next ``.get()``; a reference that fails to refresh keeps its last value
and is logged. :class:`RedactingFilter` masks every value ever resolved (old ones too) in log
records: add it to each log handler.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, overload

import anyio
import anyio.to_thread
import orjson
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from mcplane.errors import ConfigError

__all__ = [
    "MASK",
    "RedactingFilter",
    "Secret",
    "Secrets",
    "VaultSettings",
    "log_redactor",
    "redact_all_logs",
    "stop_redacting_logs",
]

logger = logging.getLogger("mcplane.secrets")

MASK = "**********"
_REFERENCE = re.compile(r"\$(\$?)\{(env|file|vault):([^}]*)\}")


class Secret:
    """A secret value. Shows as ``Secret('${env:NAME}')``, never as its value; ``.get()`` reveals it."""

    __slots__ = ("_value", "reference")

    def __init__(self, value: str, reference: str = "") -> None:
        self._value = value
        self.reference = reference
        """The template it was resolved from (safe to show), or ``""``."""

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.reference or MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """A pydantic field typed ``Secret`` takes a Secret or a plain string and dumps as the mask."""
        return core_schema.no_info_plain_validator_function(
            cls._coerce,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _: MASK),
        )

    @classmethod
    def _coerce(cls, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            return cls(value)
        raise ValueError("expected a string or a secret reference")


@dataclass(frozen=True)
class VaultSettings:
    url: str
    token: str | Secret
    namespace: str | None = None
    timeout: int = 5
    verify: bool | str = True


VaultReader = Callable[[str, str], Mapping[str, Any]]
"""``(mount, path) -> the secret's data``: the KV v2 ``data.data`` object."""


class Secrets:
    """Resolves references in config values and keeps the resulting :class:`Secret` objects fresh."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        vault: VaultSettings | None = None,
        vault_reader: VaultReader | None = None,
        refresh_interval: float | None = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._vault = vault
        self._vault_reader = vault_reader
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._tracked: list[Secret] = []
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._guard = threading.Lock()
        self._last_refresh = clock()

    # ------------------------------------------------------------------ resolving
    @overload
    def resolve(self, value: str) -> str | Secret: ...
    @overload
    def resolve(self, value: Mapping[str, Any]) -> dict[str, Any]: ...
    @overload
    def resolve(self, value: Any) -> Any: ...

    def resolve(self, value: Any) -> Any:
        """``value`` with every string holding a reference replaced by a tracked :class:`Secret`.

        Walks mappings (into dicts), lists and tuples. Raises :class:`~mcplane.errors.ConfigError`
        naming the reference (never a value) when one cannot be resolved.
        """
        return self._walk(value, {})

    def secret(self, template: str) -> Secret:
        """Resolve one value as a :class:`Secret` even when it holds no reference (a literal password)."""
        resolved = self.resolve(template)
        if isinstance(resolved, Secret):
            return resolved
        self._remember(resolved)
        return Secret(resolved)

    def _walk(self, value: Any, cache: dict[tuple[str, str], Mapping[str, Any]]) -> Any:
        if isinstance(value, str):
            if not _REFERENCE.search(value):
                return value
            rendered, secret = self._render(value, cache)
            if not secret:
                return rendered  # only escapes: plain text
            resolved = Secret(rendered, value)
            with self._guard:
                self._tracked.append(resolved)
            return resolved
        if isinstance(value, Mapping):
            return {key: self._walk(item, cache) for key, item in value.items()}
        if isinstance(value, list):
            return [self._walk(item, cache) for item in value]
        if isinstance(value, tuple):
            return tuple(self._walk(item, cache) for item in value)
        return value

    def _render(self, template: str, cache: dict[tuple[str, str], Mapping[str, Any]]) -> tuple[str, bool]:
        found = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal found
            escaped, scheme, body = match.groups()
            if escaped:
                return match.group(0)[1:]
            found = True
            part = self._lookup(scheme, body, cache)
            self._remember(part)
            return part

        rendered = _REFERENCE.sub(substitute, template)
        if found:
            self._remember(rendered)
        return rendered, found

    def _lookup(self, scheme: str, body: str, cache: dict[tuple[str, str], Mapping[str, Any]]) -> str:
        ref = f"${{{scheme}:{body}}}"
        if scheme == "env":
            if body not in self._environ:
                raise ConfigError(f"secret reference {ref}: environment variable {body!r} is not set")
            return self._environ[body]
        if scheme == "file":
            path = Path(body).expanduser()
            if not path.is_absolute() and self._base_dir is not None:
                path = self._base_dir / path
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"secret reference {ref}: cannot read the file ({type(exc).__name__})") from None
            return text[:-1] if text.endswith("\n") else text
        location, sep, key = body.partition("#")
        mount, slash, path = location.strip("/").partition("/")
        if not sep or not key or not slash or not path:
            raise ConfigError(f"secret reference {ref}: write it as ${{vault:MOUNT/PATH#KEY}}")
        if (mount, path) not in cache:
            try:
                cache[(mount, path)] = self._reader()(mount, path)
            except ConfigError:
                raise
            except Exception as exc:
                detail = self.redact(str(exc))[:200]
                raise ConfigError(
                    f"secret reference {ref}: Vault read failed ({type(exc).__name__}: {detail})"
                ) from None
        data = cache[(mount, path)]
        if key not in data:
            raise ConfigError(f"secret reference {ref}: the Vault secret has no key {key!r}")
        item = data[key]
        return item if isinstance(item, str) else orjson.dumps(item).decode()

    def _reader(self) -> VaultReader:
        if self._vault_reader is None:
            settings = self._vault
            if settings is None:
                url, token = self._environ.get("VAULT_ADDR"), self._environ.get("VAULT_TOKEN")
                if not url or not token:
                    raise ConfigError("a ${vault:...} reference needs VaultSettings or VAULT_ADDR and VAULT_TOKEN")
                settings = VaultSettings(url, Secret(token), self._environ.get("VAULT_NAMESPACE"))
            self._vault_reader = hvac_reader(settings)
            token = settings.token.get() if isinstance(settings.token, Secret) else settings.token
            self._remember(token)
        return self._vault_reader

    # ------------------------------------------------------------------ refreshing
    def refresh(self) -> list[str]:
        """Re-resolve every tracked secret now; return the references that failed (kept as they were)."""
        cache: dict[tuple[str, str], Mapping[str, Any]] = {}
        failed: list[str] = []
        with self._guard:
            tracked = list(self._tracked)
        for secret in tracked:
            try:
                secret._value, _ = self._render(secret.reference, cache)
            except ConfigError as exc:
                failed.append(secret.reference)
                logger.error("secret refresh failed, keeping the previous value: %s", exc)
        self._last_refresh = self._clock()
        return failed

    def due(self) -> bool:
        """Whether ``refresh_interval`` has passed on the clock since the last refresh."""
        interval = self.refresh_interval
        return interval is not None and self._clock() - self._last_refresh >= interval

    async def refresh_if_due(self) -> list[str] | None:
        """Refresh (in a worker thread: Vault reads block) if due; ``None`` if it was not due."""
        if not self.due():
            return None
        return await anyio.to_thread.run_sync(self.refresh)

    async def run(self, *, wait: Callable[[float], Awaitable[object]] = anyio.sleep) -> None:
        """Refresh forever, every ``refresh_interval``; ``wait`` is the trigger (tests pass their own)."""
        interval = self.refresh_interval
        if interval is None:
            return
        while True:
            await wait(interval)
            await anyio.to_thread.run_sync(self.refresh)

    # ------------------------------------------------------------------ redaction
    def _remember(self, value: str) -> None:
        if not value:
            return
        with self._guard:
            if value not in self._values:
                self._values.add(value)
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        """``text`` with every value ever resolved replaced by ``**********``."""
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)

    def logging_filter(self) -> RedactingFilter:
        return RedactingFilter(self)


_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Masks every resolved secret value in a record's message, exception text, stack and extras.

    Attach it to handlers (``handler.addFilter(secrets.logging_filter())``): a filter on a logger
    does not see records that propagate from its children.
    """

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.secrets.redact
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let the handler report it
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            # Handlers that re-render the live exception (rich's) would show it unredacted; the
            # formatted, redacted text stays and standard formatters print it.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


class _LogRedaction:
    """The process's one log-record factory and the filters it runs on every record.

    Installed on the first registration, wrapping whatever factory was current; later
    registrations only add a filter, so the chain of factories stays one deep however many
    resolvers (planes, tests) register.
    """

    def __init__(self) -> None:
        self.filters: tuple[RedactingFilter, ...] = ()
        self.lock = threading.Lock()
        self.installed = False

    def add(self, secrets: Secrets) -> None:
        with self.lock:
            if any(existing.secrets is secrets for existing in self.filters):
                return
            self.filters = (*self.filters, RedactingFilter(secrets))
            if not self.installed:
                self.installed = True
                self.wrap(logging.getLogRecordFactory())

    def remove(self, secrets: Secrets) -> None:
        with self.lock:
            self.filters = tuple(existing for existing in self.filters if existing.secrets is not secrets)

    def redact(self, text: str) -> str:
        for redacting in self.filters:
            text = redacting.secrets.redact(text)
        return text

    def wrap(self, previous: Callable[..., logging.LogRecord]) -> None:
        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            for redacting in self.filters:  # a tuple swapped whole: safe to read without the lock
                redacting.filter(record)
            return record

        logging.setLogRecordFactory(factory)


_log_redaction = _LogRedaction()


def redact_all_logs(secrets: Secrets) -> None:
    """Mask ``secrets``' values in every log record of this process, whatever logger or handler.

    A record factory runs a :class:`RedactingFilter` per registered resolver as each record is
    made, so records of loggers and handlers configured later (uvicorn's, a user's) are covered
    too. The factory is installed once per process; registering the same resolver again does nothing.
    """
    _log_redaction.add(secrets)


def log_redactor() -> Callable[[str], str] | None:
    """What masks every registered resolver's values in a text, or ``None`` while none is registered.

    For writers that render fields after the record was made (the JSON log formatter's event
    fields), which the record factory never saw.
    """
    return _log_redaction.redact if _log_redaction.filters else None


def stop_redacting_logs(secrets: Secrets) -> None:
    """Undo :func:`redact_all_logs` for ``secrets`` (its values show in later records again)."""
    _log_redaction.remove(secrets)


def hvac_reader(settings: VaultSettings) -> VaultReader:
    """A :data:`VaultReader` over ``hvac`` (KV v2, latest version)."""
    import hvac

    token = settings.token.get() if isinstance(settings.token, Secret) else settings.token
    client = hvac.Client(
        url=settings.url,
        token=token,
        namespace=settings.namespace,
        timeout=settings.timeout,
        verify=settings.verify,
    )

    def read(mount: str, path: str) -> Mapping[str, Any]:
        response = client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount, raise_on_deleted_version=True)
        data = response["data"]["data"]
        if not isinstance(data, Mapping):
            raise ConfigError(f"Vault secret {mount}/{path} has no KV v2 data object")
        return data

    return read
