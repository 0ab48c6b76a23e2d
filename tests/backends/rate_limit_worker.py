"""One of the processes in the two-process rate-limit test: hammer one key, report what passed.

Usage: python rate_limit_worker.py REDIS_URL PREFIX KEY LIMIT ATTEMPTS CONCURRENCY
Prints ``ready`` once connected, waits for ``go`` on stdin, then prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from mcplane.backends import parse_limit
from mcplane.backends.redis import RedisRateLimiter, connect_redis


async def main(url: str, prefix: str, key: str, limit_text: str, attempts: int, concurrency: int) -> None:
    client = connect_redis(url)
    limiter = RedisRateLimiter(client, prefix=prefix)
    limit = parse_limit(limit_text)
    await client.ping()
    await limiter.reset("warm-up", limit)  # opens connections and loads nothing on the shared key
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    allowed = refused = 0
    started = time.time()

    async def hammer(count: int) -> None:
        nonlocal allowed, refused
        for _ in range(count):
            if (await limiter.hit(key, limit)).allowed:
                allowed += 1
            else:
                refused += 1

    share, extra = divmod(attempts, concurrency)
    await asyncio.gather(*(hammer(share + (1 if i < extra else 0)) for i in range(concurrency)))
    print(json.dumps({"allowed": allowed, "refused": refused, "started": started, "ended": time.time()}), flush=True)
    await client.aclose()


if __name__ == "__main__":
    url, prefix, key, limit_text, attempts, concurrency = sys.argv[1:7]
    asyncio.run(main(url, prefix, key, limit_text, int(attempts), int(concurrency)))
