"""Running the scoring server: uvicorn around the ASGI app, with every connection bounded,
a graceful stop, one access-log line per request on stderr (never a payload), and the
follower that switches to the version an alias names when it moves (its lines on stderr
too)."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from keras_variants.serving.server import ScoringApp

if TYPE_CHECKING:
    from keras_variants.serving.follow import Follower

MAX_CONNECTIONS = 256  # open connections at once; uvicorn answers 503 beyond
GRACEFUL_SHUTDOWN_S = 8  # in-flight requests finish within it, then the process exits


def run_server(app: ScoringApp, host: str, port: int, follower: Follower | None = None) -> bool:
    """Serve ``app`` on ``host``:``port`` until SIGINT or SIGTERM, with ``follower``
    looking at its alias meanwhile; False if it never listened (the address was taken),
    which uvicorn has then logged in one line."""
    import uvicorn

    _access_log()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,  # it logs the query string: ours logs no request content
            server_header=False,
            limit_concurrency=MAX_CONNECTIONS,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            timeout_keep_alive=5,
            lifespan="on",
        )
    )
    if follower is not None:
        follower.start()
    try:
        server.run()
    finally:
        if follower is not None:
            follower.stop()
    return server.started


def _access_log() -> None:
    """One line per request on stderr (the server's, without payloads), one per version
    switch or failed load; uvicorn's own errors (a port in use) too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("keras_variants.access", "keras_variants.follow", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING if name == "uvicorn.error" else logging.INFO)
        logger.propagate = False
