"""mcplane's gateway in front of one upstream, served the way ``mcplane gateway --config gateway.yaml`` serves it.

``--upstream URL`` is the bench's echo Plane (Streamable HTTP). The server writes this
``gateway.yaml`` to a temporary directory and loads it with ``Gateway.from_config(path)``, the
call ``mcplane gateway`` makes, then configures logging and serves HTTP with the same calls as
``mcplane.gateway.cli`` (on a pre-bound socket, like every bench server):

```yaml
server: {name: bench-gateway}
observability: {log_level: warning}   # like the bench's direct server: metrics on, no call-log lines
upstreams:
  bench:                               # the namespace: the tool is `bench__echo`
    endpoints: [{url: <--upstream>}]   # everything else at its default (mode auto, retries, breaker, health)
```
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from _common import announce, bind_free_socket, parse_args

from mcplane.gateway import Gateway
from mcplane.transports.serve import configure_process_logging, serve_http


def gateway_yaml(upstream: str) -> str:
    return yaml.safe_dump(
        {
            "server": {"name": "bench-gateway"},
            "observability": {"log_level": "warning"},
            "upstreams": {"bench": {"endpoints": [{"url": upstream}]}},
        },
        sort_keys=False,
    )


def main() -> None:
    args = parse_args(options={"upstream": ""})
    if not args.upstream:
        raise SystemExit("--upstream URL is required")
    with tempfile.TemporaryDirectory(prefix="mcplane-bench-gateway-") as workdir:
        config = Path(workdir) / "gateway.yaml"
        config.write_text(gateway_yaml(args.upstream))
        plane = Gateway.from_config(config)
    configure_process_logging(plane.config)
    if args.transport == "stdio":
        plane.run("stdio")
        return
    sock = bind_free_socket()
    announce(sock)
    serve_http(plane, host="127.0.0.1", port=sock.getsockname()[1], sock=sock, **plane.config.http_options())


if __name__ == "__main__":
    main()
