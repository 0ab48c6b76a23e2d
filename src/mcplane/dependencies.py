"""Lifespan-managed dependencies that tools receive by injection.

A dependency is opened once when the plane starts and closed once when it stops, so a
connection pool or HTTP client is shared by every call and nothing leaks however many calls
run::

    @plane.dependency
    async def db() -> AsyncIterator[Pool]:
        pool = await create_pool()
        try:
            yield pool
        finally:
            await pool.close()

    @plane.tool()
    async def fetch_user(user_id: str, pool: Pool = Inject(db)) -> User: ...

Injected parameters are hidden from the tool's input schema.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from mcplane.errors import ConfigError

__all__ = ["Dependency", "Inject", "Injected", "bind_injections", "open_dependencies"]


@dataclass(frozen=True, slots=True)
class Dependency:
    """A named factory: an async generator, a sync generator, or an async context manager factory."""

    name: str
    factory: Callable[[], Any]

    def open(self) -> AbstractAsyncContextManager[Any]:
        factory = self.factory
        if inspect.isasyncgenfunction(factory):
            return asynccontextmanager(factory)()
        if inspect.isgeneratorfunction(factory):
            return _sync_to_async(contextmanager(factory)())
        made = factory()
        if isinstance(made, AbstractAsyncContextManager):
            return typing.cast(AbstractAsyncContextManager[Any], made)
        return _constant(made)


@asynccontextmanager
async def _sync_to_async(cm: Any) -> AsyncGenerator[Any]:
    with cm as value:
        yield value


@asynccontextmanager
async def _constant(value: Any) -> AsyncGenerator[Any]:
    if inspect.isawaitable(value):
        value = await value
    yield value


@dataclass(frozen=True, slots=True)
class Injected:
    """The default-value marker a tool parameter uses to receive a dependency."""

    dependency: Dependency


def Inject(dependency: Dependency | Callable[..., Any]) -> Any:
    """Mark a tool parameter as receiving a lifespan dependency (hidden from the input schema)."""
    if isinstance(dependency, Dependency):
        return Injected(dependency)
    registered = getattr(dependency, "__mcplane_dependency__", None)
    if not isinstance(registered, Dependency):
        raise ConfigError(f"{getattr(dependency, '__name__', dependency)!r} is not a registered @plane.dependency")
    return Injected(registered)


def bind_injections(fn: Callable[..., Any], resolve: Callable[[str], Any]) -> Callable[..., Any]:
    """Return ``fn`` with its injected parameters removed from the signature and filled at call time.

    ``resolve(name)`` returns the open dependency. A function without injected parameters is
    returned unchanged, so the common case costs nothing.
    """
    if not any(isinstance(param.default, Injected) for param in inspect.signature(fn).parameters.values()):
        return fn  # nothing to inject: annotations are left for the SDK to resolve, unevaluated
    signature = inspect.signature(fn, eval_str=True)
    injected = {
        name: param.default.dependency.name
        for name, param in signature.parameters.items()
        if isinstance(param.default, Injected)
    }
    kept = [param for name, param in signature.parameters.items() if name not in injected]
    hints = {k: v for k, v in typing.get_type_hints(fn, include_extras=True).items() if k not in injected}

    def fill(kwargs: dict[str, Any]) -> dict[str, Any]:
        for param_name, dep_name in injected.items():
            kwargs[param_name] = resolve(dep_name)
        return kwargs

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **fill(kwargs))

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **fill(kwargs))

        wrapper = sync_wrapper
    wrapper.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    wrapper.__annotations__ = hints
    return wrapper


@asynccontextmanager
async def open_dependencies(dependencies: Mapping[str, Dependency]) -> AsyncGenerator[dict[str, Any]]:
    """Open every dependency in registration order; close them in reverse order on exit."""
    opened: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        for name, dependency in dependencies.items():
            opened[name] = await stack.enter_async_context(dependency.open())
        yield opened
