"""``python -m services.webhooks``: the webhook dispatcher (``returnloop webhooks`` runs this)."""

from __future__ import annotations

import asyncio
import logging
import sys

from prometheus_client import CollectorRegistry

from shared.logging import configure_logging
from shared.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings()
        if not settings.kafka_bootstrap or not settings.database_url:
            raise SettingsError("webhooks need RETURNLOOP_KAFKA_BOOTSTRAP and _DATABASE_URL")
        configure_logging("webhooks", settings.log_level)
        # One line per POST would name every receiver URL at INFO; attempts log their own.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        from services.webhooks.main import WebhooksProcess, serve_metrics

        registry = CollectorRegistry()
        serve_metrics(settings, registry)
        asyncio.run(WebhooksProcess(settings, registry).run())
    except (SettingsError, ValueError) as error:
        print(f"returnloop webhooks: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
