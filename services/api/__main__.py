"""``python -m services.api``: the HTTP API under uvicorn (``returnloop api`` runs this)."""

from __future__ import annotations

import sys

import uvicorn

from services.api.app import create_app
from shared.logging import configure_logging
from shared.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings()
        if not settings.kafka_bootstrap or not settings.database_url:
            raise SettingsError("the API needs RETURNLOOP_KAFKA_BOOTSTRAP and _DATABASE_URL")
        configure_logging("api", settings.log_level)
        app = create_app(settings)
    except (SettingsError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        print(f"returnloop api: {error}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.api_keep_alive_seconds,
        loop="uvloop",
        http="httptools",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
