"""Running the scoring server: uvicorn around the ASGI app, with every connection bounded,
a graceful stop, and one access-log line per request on stderr (never a payload)."""

from __future__ import annotations

import logging
import sys

from keras_variants.serving.server import ScoringApp

MAX_CONNECTIONS = 256  # open connections at once; uvicorn answers 503 beyond
GRACEFUL_SHUTDOWN_S = 8  # in-flight requests finish within it, then the process exits


def run_server(app: ScoringApp, host: str, port: int) -> bool:
    """Serve ``app`` on ``host``:``port`` until SIGINT or SIGTERM; False if it never
    listened (the address was taken), which uvicorn has then logged in one line."""
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
    server.run()
    return server.started


def _access_log() -> None:
    """One line per request on stderr (the server's, without payloads); uvicorn's own
    errors (a port in use) too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("keras_variants.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if name == "keras_variants.access" else logging.WARNING)
        logger.propagate = False
