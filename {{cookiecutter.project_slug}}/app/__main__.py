"""`python -m app`: the service under uvicorn, configured from the environment.

uvloop and httptools are the fastest event loop and HTTP parser uvicorn offers; the access
log is off because writing a line per request would cost more than scoring it (requests
are counted in /metrics instead). One worker per process: scale with replicas, each with
its own CPU limit, which is also what sizes onnxruntime's threads.
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings
from governance.core.errors import InputError


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']).upper() or 'settings'}: {item['msg']}"
            for item in error.errors()
        )
        print(f"invalid settings: {problems}", file=sys.stderr)
        return 2
    except InputError as error:  # the policy file the serving defaults come from (POLICY_PATH)
        print(f"invalid settings: {'; '.join(str(error).splitlines())}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        application = create_app(settings)
    except InputError as error:
        print(f"cannot start: {error}", file=sys.stderr)
        return 2
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
