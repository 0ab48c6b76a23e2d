"""Live reload of ``gateway.yaml``: on SIGHUP, and when the file's content changes.

``mcplane gateway --config gateway.yaml`` reloads without a restart: the process, its listening
socket and its clients' connections stay. A reload reads, resolves and validates the whole file
first; if anything is wrong it logs one ``config_reload_failed`` error with the precise key path
and keeps serving the config it has (a running gateway never stops over a bad file). A valid
file is applied at once:

* ``upstreams``: new ones are connected, removed ones closed, changed ones (any key of their
  entry) replaced by a fresh connection — the new one is connected first, then new calls go to
  it, and calls already in flight finish on the old connection, which closes once they are done
  (or after ``reload.drain``); unchanged upstreams keep their connections, breakers and catalogs;
* ``versions``: defaults, canaries and weights switch for the next call; an entry left unchanged
  keeps its canary window and any rollback (see :mod:`mcplane.gateway.versions`);
* ``reload``: its own keys (``watch``, ``interval``, ``drain``).

**Not reloadable**: the plane's sections (``server``, ``http``, ``redis_url``, ``auth``,
``authorization``, ``rate_limit``, ``cache``, ``budget``, ``audit``, ``observability``, ``tools``)
and the gateway's other sections (``shared_state``, ``integrity``): their layers are built once when the
gateway starts. A reload that changes them applies
everything else and logs a ``config_not_reloaded`` warning naming them; they take effect at the
next restart.

The file is read every ``reload.interval`` (2 s by default) and reloaded when its SHA-256
differs from the content last loaded (content, not mtime: a rewrite within the same second is
seen, a ``touch`` is not a change). An empty file is refused (it is what a reader sees in the
middle of a non-atomic rewrite); write the new file beside the old one and rename it into place.
SIGHUP reloads whatever the content. Process-level: :func:`install_sighup` sets the handler
before serving starts, so a SIGHUP during start-up is queued, not fatal (its default action ends
the process).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel

from mcplane.config import PlaneConfig
from mcplane.errors import ConfigError
from mcplane.gateway.config import GatewayConfig, load_gateway_config
from mcplane.observability.logs import EVENT_KEY
from mcplane.secrets import Secret

if TYPE_CHECKING:
    from mcplane.gateway.provider import UpstreamProvider

__all__ = ["Changes", "Reloader", "diff", "install_sighup"]

logger = logging.getLogger("mcplane.gateway")


@dataclass
class Changes:
    """What a new config changes, by name."""

    added: list[str] = field(default_factory=list[str])
    removed: list[str] = field(default_factory=list[str])
    changed: list[str] = field(default_factory=list[str])
    """Upstreams whose entry differs: reconnected."""
    versions: list[str] = field(default_factory=list[str])
    """Versioned tools added, removed or edited."""
    not_reloaded: list[str] = field(default_factory=list[str])
    """Plane sections that differ: they apply at the next restart."""


_RELOADABLE = frozenset({"plane", "upstreams", "versions", "reload"})
"""``plane`` is compared section by section above; the others are applied."""


def _plain(value: Any) -> Any:
    """A comparable form of a config value (secrets by their resolved value)."""
    if isinstance(value, Secret):
        return ("secret", value.get())
    if isinstance(value, BaseModel):
        fields = {key: _plain(getattr(value, key)) for key in type(value).model_fields}
        fingerprint = getattr(value, "fingerprint", None)  # what the keys do not show (an OpenAPI document)
        if isinstance(fingerprint, str):
            fields["(fingerprint)"] = fingerprint
        return (type(value).__name__, fields)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
    return value


def diff(old: GatewayConfig, new: GatewayConfig) -> Changes:
    changes = Changes()
    for name, upstream in new.upstreams.items():
        if name not in old.upstreams:
            changes.added.append(name)
        elif _plain(upstream) != _plain(old.upstreams[name]):
            changes.changed.append(name)
    changes.removed = [name for name in old.upstreams if name not in new.upstreams]
    names = set(old.versions) | set(new.versions)
    changes.versions = sorted(name for name in names if old.versions.get(name) != new.versions.get(name))
    changes.not_reloaded = [
        section
        for section in PlaneConfig.model_fields
        if _plain(getattr(old.plane, section)) != _plain(getattr(new.plane, section))
    ]
    changes.not_reloaded += [  # the gateway's other sections (shared_state, ...)
        section
        for section in GatewayConfig.model_fields
        if section not in _RELOADABLE and _plain(getattr(old, section)) != _plain(getattr(new, section))
    ]
    return changes


class Reloader:
    """Reloads ``path`` into a running :class:`UpstreamProvider` (started by it as :meth:`run`)."""

    def __init__(
        self,
        path: str | Path,
        provider: UpstreamProvider,
        current: GatewayConfig,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.provider = provider
        self.current = current
        """The config in force."""
        self.environ = environ
        self.reloads = 0
        """Reloads applied so far."""
        self.failures = 0
        """Reloads refused so far (invalid file)."""
        self.last_error: str | None = None
        self._seen = self._digest()
        self._lock = anyio.Lock()
        self._requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: anyio.Event | None = None

    # ----------------------------------------------------------------- triggers
    def request(self) -> None:
        """Ask for a reload; safe from a signal handler or another thread (queued until :meth:`run` runs)."""
        self._requested = True
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake_up)
            except RuntimeError:  # the loop closed: the gateway is stopping
                pass

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Serve reload requests, and every ``reload.interval`` look at the file (when ``watch``)."""
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake = anyio.Event()
                if not self._requested:
                    with anyio.move_on_after(self.current.reload.interval):
                        await self._wake.wait()
                try:
                    if self._requested:
                        self._requested = False
                        await self.reload("SIGHUP")
                    elif self.current.reload.watch:
                        await self.check()
                except Exception:  # a bug here must not take the gateway down with it
                    logger.exception("config reload from %s failed", self.path)
        finally:
            self._loop = None

    async def check(self) -> bool:
        """One look at the file: reload if its content changed since it was last loaded."""
        digest = self._digest()
        if digest is None or digest == self._seen:
            return False
        return await self.reload("file changed")

    # ----------------------------------------------------------------- reload
    async def reload(self, trigger: str = "request") -> bool:
        """Read, validate and apply the file; on any error log it and keep the current config."""
        async with self._lock:
            self._seen = self._digest()  # this content is handled, whatever the outcome
            try:
                new = self._load()
            except ConfigError as exc:
                return self._refused(trigger, " ".join(exc.message.split()))
            except Exception as exc:  # a secret backend, a file system: never the gateway's end
                return self._refused(trigger, f"{self.path}: {type(exc).__name__}: {exc}")
            changes = diff(self.current, new)
            try:
                await self.provider.reconfigure(new, restart=changes.changed, drain=new.reload.drain)
            except Exception as exc:
                logger.exception("config reload from %s failed while applying it", self.path)
                return self._refused(trigger, f"{self.path}: could not apply: {type(exc).__name__}")
            self.current = new
            self.reloads += 1
            self.last_error = None
            self._applied(trigger, changes)
            return True

    def _load(self) -> GatewayConfig:
        try:
            empty = not self.path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read the file ({exc.strerror or exc})") from None
        if empty:
            raise ConfigError(f"{self.path}: the file is empty")
        return load_gateway_config(self.path, environ=self.environ)

    def _digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None  # between an unlink and a rename, say: look again at the next interval

    def _refused(self, trigger: str, error: str) -> bool:
        self.failures += 1
        self.last_error = error
        event = {"event": "config_reload_failed", "source": str(self.path), "trigger": trigger, "error": error}
        logger.error("config reload refused, keeping the current config: %s", error, extra={EVENT_KEY: event})
        return False

    def _applied(self, trigger: str, changes: Changes) -> None:
        event = {
            "event": "config_reloaded",
            "source": str(self.path),
            "trigger": trigger,
            "upstreams_added": changes.added,
            "upstreams_removed": changes.removed,
            "upstreams_changed": changes.changed,
            "versions_changed": changes.versions,
        }
        logger.info("config reloaded from %s (%s)", self.path, trigger, extra={EVENT_KEY: event})
        if changes.not_reloaded:
            sections = ", ".join(changes.not_reloaded)
            warning = {"event": "config_not_reloaded", "source": str(self.path), "sections": changes.not_reloaded}
            logger.warning(
                "config sections %s changed but apply only at the next restart", sections, extra={EVENT_KEY: warning}
            )


def install_sighup(reloader: Reloader) -> Callable[[], None]:
    """Have SIGHUP ask ``reloader`` for a reload; returns the function that restores the old handler.

    A no-op off the main thread or where there is no SIGHUP.
    """
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None or threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(sighup, lambda _signum, _frame: reloader.request())

    def restore() -> None:
        signal.signal(sighup, previous)

    return restore
