"""The quickstart: a billing Plane with a typed tool, a resource template and a prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import BaseModel

from mcplane import Context, Inject, Plane

plane = Plane("billing")


class User(BaseModel):
    id: str
    name: str
    plan: str


class Directory:
    """Stands in for a connection pool: opened once at start, closed at shutdown."""

    def __init__(self) -> None:
        self.users = {"u1": User(id="u1", name="Ada", plan="pro"), "u2": User(id="u2", name="Linus", plan="free")}
        self.closed = False

    async def get(self, user_id: str) -> User | None:
        return self.users.get(user_id)


@plane.dependency
async def directory() -> AsyncIterator[Directory]:
    pool = Directory()
    try:
        yield pool
    finally:
        pool.closed = True


@plane.tool(read_only=True, timeout="2s")
async def fetch_user(user_id: str, ctx: Context, users: Directory = Inject(directory)) -> User:
    """Fetch a user by id."""
    user = await users.get(user_id)
    if user is None:
        from mcplane import NotFound

        raise NotFound(f"no user {user_id!r}")
    await ctx.report_progress(1, 1)
    return user


@plane.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@plane.resource("users://{user_id}")
async def user_profile(user_id: str) -> str:
    return f"profile of {user_id}"


@plane.prompt()
def summarize(topic: str) -> str:
    return f"Summarize what we know about {topic} in three sentences."


if __name__ == "__main__":
    plane.run()
