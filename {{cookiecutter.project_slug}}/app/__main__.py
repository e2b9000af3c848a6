"""`python -m app`: the service under uvicorn (and gRPC on GRPC_PORT), configured from the environment.

uvloop and httptools are the fastest event loop and HTTP parser uvicorn offers; the access
log is off because writing a line per request would cost more than scoring it (requests
are counted in /metrics instead). One worker per process: scale with replicas, each with
its own CPU limit, which is also what sizes onnxruntime's threads.

The gRPC server (app/grpc_server.py) runs on uvicorn's event loop and shares its Service: it
starts once the model is loaded (after the lifespan's startup) and stops first on shutdown,
within GRACEFUL_SHUTDOWN_SECONDS, so no gRPC call is scored after the capture store closes.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

import uvicorn
from pydantic import ValidationError

from app.main import ServingApp, create_app
from app.model import ModelError
from app.settings import Settings
from governance.core.errors import InputError

log = logging.getLogger("app")


class Server(uvicorn.Server):
    """uvicorn's server, with the gRPC server of the same application started and stopped inside it."""

    def __init__(self, config: uvicorn.Config, application: ServingApp) -> None:
        super().__init__(config)
        self.application = application
        self.grpc: Any = None
        self.failed = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        settings = self.application.settings
        if self.should_exit or settings.grpc_port is None:
            return
        from app import grpc_server  # imported only when gRPC is on

        try:
            self.grpc = await grpc_server.start(self.application.service, settings)
        except OSError as error:
            log.error("%s", error)
            self.failed = self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.grpc is not None:
            await self.grpc.stop(self.application.settings.graceful_shutdown_seconds)
        await super().shutdown(sockets)


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
    except (InputError, ModelError) as error:  # ModelError: a refused challenger (SHADOW_MODEL_PATH)
        print(f"cannot start: {error}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
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
    server = Server(config, application)
    server.run()
    return 1 if server.failed else 0


if __name__ == "__main__":
    sys.exit(main())
