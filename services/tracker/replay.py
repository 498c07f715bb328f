"""``python -m services.tracker.replay --since T [--topic NAME …]`` (``returnloop
replay-accepted``): after a restore, apply what the keyed topics past validation hold
since ``T``, up to their current end, with the tracker's own apply handler.

What the restored database already holds is a scan, colour update or disposition seen
before and changes nothing; what came after the dump is applied as it first was. No
consumer group is joined or moved. The transitions and alerts it decides go to the
outbox, which the running trackers' relays publish.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime

from tqdm import tqdm

from services.tracker.main import TrackerProcess
from shared import topics
from shared.adapters.kafka.replay import ReplayReport, replay_since
from shared.logging import configure_logging
from shared.settings import Settings, SettingsError

DEFAULT_TOPICS = (topics.ACCEPTED, topics.HEALTHCODE_ACCEPTED, topics.DISPOSITIONS)


def parse_since(text: str) -> datetime:
    """An ISO 8601 time with a UTC offset (``Z`` allowed); ValueError says what is wrong."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"--since {text!r} has no UTC offset (e.g. 2026-12-02T02:55:00+00:00)")
    return moment


async def replay(settings: Settings, since: datetime, names: list[str]) -> ReplayReport:
    assert settings.kafka_bootstrap
    process = TrackerProcess(settings)
    tracker = await process.start()
    try:
        with tqdm(unit="record", desc="replayed") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            return await replay_since(
                settings.kafka_bootstrap,
                names,
                since,
                tracker.handle_apply,
                max_records=settings.batch_max_records,
                on_progress=progress,
            )
    finally:
        await process.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="returnloop replay-accepted")
    parser.add_argument("--since", required=True)
    parser.add_argument("--topic", action="append", default=[])
    arguments = parser.parse_args(argv)
    try:
        since = parse_since(arguments.since)
        settings = Settings()
        if not settings.kafka_bootstrap or not settings.database_url:
            raise SettingsError("set RETURNLOOP_KAFKA_BOOTSTRAP and RETURNLOOP_DATABASE_URL")
        configure_logging("replay", settings.log_level)
        names = arguments.topic or list(DEFAULT_TOPICS)
        report = asyncio.run(replay(settings, since, names))
    except (SettingsError, ValueError) as error:
        print(f"returnloop replay-accepted: {error}", file=sys.stderr)
        return 2
    except LookupError as error:
        print(f"returnloop replay-accepted: {error.args[0]}", file=sys.stderr)
        return 1
    print(
        f"replayed {report.records} record(s) written since {since.isoformat()} from "
        f"{report.partitions} partition(s) of {', '.join(names)}; the trackers' relays "
        "publish what they changed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
