"""``returnloop dlq``: list, inspect and replay the dead letters on ``scans.rejected``.

A dead letter is named by its place on that topic, ``PARTITION:OFFSET``. Its
value is the original input, which may hold plain ID numbers: listings show a
masked preview only, ``show`` masks unless asked to reveal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared import topics
from shared.service_layer.dead_letters import (
    BadDeadLetterId,
    DeadLetterId,
    NotReplayable,
    as_text,
    mask_personal,
    pretty_payload,
    preview,
    replay_topic,
)
from shared.service_layer.messages import DeadLetter
from shared.settings import Settings

if TYPE_CHECKING:
    from kafka import KafkaConsumer

dlq_cli = typer.Typer(
    no_args_is_help=True,
    help="Dead letters on scans.rejected: list, show, replay after a fix.",
)

# How long reading the topic may go without progress before giving up.
READ_STALL_SECONDS = 15.0
# How long a listing keeps reading dead letters that arrive while it reads.
READ_TAIL_SECONDS = 5.0


class DlqError(Exception):
    """Something the operator must fix; the message says what."""


@dataclass(frozen=True)
class StoredDeadLetter:
    letter_id: DeadLetterId
    letter: DeadLetter


def _fail(message: str) -> typer.Exit:
    typer.echo(f"returnloop dlq: {message}", err=True)
    return typer.Exit(2)


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Our own errors, and the servers' ones, as one line and exit status 2."""
    import asyncpg
    from kafka.errors import KafkaError

    try:
        yield
    except (BadDeadLetterId, DlqError) as error:
        raise _fail(str(error)) from None
    except KafkaError as error:
        raise _fail(f"Kafka: {error!r}") from None
    except asyncpg.UndefinedTableError:
        raise _fail("the schema is out of date: run `returnloop migrate`") from None
    except (OSError, asyncpg.PostgresError) as error:
        raise _fail(f"PostgreSQL: {error}") from None


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as error:  # pydantic's ValidationError names the bad variable
        raise _fail(f"bad settings: {error}") from None


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise _fail("set RETURNLOOP_KAFKA_BOOTSTRAP to the Kafka servers holding scans.rejected")
    return settings.kafka_bootstrap


def _database_url(settings: Settings) -> str:
    if not settings.database_url:
        raise _fail("set RETURNLOOP_DATABASE_URL: replays are recorded in PostgreSQL")
    return settings.database_url


@contextmanager
def _consumer(bootstrap: str) -> Iterator[KafkaConsumer]:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="returnloop-dlq",
            auto_offset_reset="earliest",
        )
    except KafkaError as error:
        raise DlqError(f"cannot reach Kafka at {bootstrap}: {error}") from None
    try:
        yield consumer
    finally:
        consumer.close()


def _partitions(consumer: KafkaConsumer) -> list[int]:
    if topics.REJECTED not in consumer.topics():
        raise DlqError(f"there is no {topics.REJECTED} topic (run `returnloop topics`)")
    return sorted(consumer.partitions_for_topic(topics.REJECTED) or ())


def _stored(record: Any) -> StoredDeadLetter:
    key: bytes | None = record.key
    value: bytes = record.value or b""
    try:
        letter = DeadLetter.from_record(key, value, list(record.headers or ()))
    except (ValueError, UnicodeDecodeError):  # not written by returnloop: keep the bytes
        letter = DeadLetter(
            "unreadable_headers",
            "",
            key,
            value,
            "",
            None,
            None,
            datetime.fromtimestamp(record.timestamp / 1000, UTC),
        )
    if letter.rejected_at.tzinfo is None:
        letter = replace(letter, rejected_at=letter.rejected_at.replace(tzinfo=UTC))
    return StoredDeadLetter(DeadLetterId(record.partition, record.offset), letter)


def read_dead_letters(bootstrap: str) -> Iterator[StoredDeadLetter]:
    """Every dead letter on the topic now, partition by partition, in offset order.

    The end offsets the broker reports are a hint only (the embedded broker
    reports a batch's first offset + 1): reading goes on until a poll comes back
    empty, for at most READ_TAIL_SECONDS past those ends.
    """
    from kafka import TopicPartition

    with _consumer(bootstrap) as consumer:
        parts = [TopicPartition(topics.REJECTED, p) for p in _partitions(consumer)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        progress_at = time.monotonic()
        tail_from: float | None = None
        while True:
            batches = consumer.poll(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                for record in records:
                    yield _stored(record)
            now = time.monotonic()
            if tail_from is None and all(consumer.position(tp) >= end[tp] for tp in parts):
                tail_from = now
            if batches:
                progress_at = now
            if tail_from is not None and (not batches or now - tail_from > READ_TAIL_SECONDS):
                return
            if now - progress_at > READ_STALL_SECONDS:
                raise DlqError(f"reading {topics.REJECTED} stalled; is Kafka healthy?")


def read_dead_letter(bootstrap: str, letter_id: DeadLetterId) -> StoredDeadLetter:
    """The one dead letter at ``letter_id``, or DlqError saying the topic has none there."""
    from kafka import TopicPartition

    with _consumer(bootstrap) as consumer:
        partitions = _partitions(consumer)
        if letter_id.partition not in partitions:
            raise DlqError(
                f"no dead letter {letter_id}: {topics.REJECTED} has partitions "
                f"0–{len(partitions) - 1}"
            )
        tp = TopicPartition(topics.REJECTED, letter_id.partition)
        consumer.assign([tp])
        first = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        if letter_id.offset < first:
            raise DlqError(
                f"no dead letter {letter_id}: partition {tp.partition} starts at {first}"
            )
        consumer.seek(tp, letter_id.offset)
        # Past the end the broker reports, wait briefly: that end is only a hint.
        wait = READ_STALL_SECONDS if letter_id.offset < end else 2.0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=1).values():
                for record in records:
                    if record.offset == letter_id.offset:
                        return _stored(record)
                    # A transaction marker took the offset, or it is out of range.
                    raise DlqError(f"no dead letter {letter_id}")
        raise DlqError(f"no dead letter {letter_id} on partition {tp.partition}")


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"--since {text!r} is not an ISO date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _matches(
    stored: StoredDeadLetter, reason: str | None, source_topic: str | None, since: datetime | None
) -> bool:
    letter = stored.letter
    return (
        (reason is None or letter.reason == reason)
        and (source_topic is None or letter.source_topic == source_topic)
        and (since is None or letter.rejected_at >= since)
    )


def _source(letter: DeadLetter) -> str:
    if letter.source_partition is None:
        return letter.source_topic
    return f"{letter.source_topic}:{letter.source_partition}:{letter.source_offset}"


def _replayed(database_url: str, letter_ids: list[DeadLetterId]) -> dict[DeadLetterId, datetime]:
    from shared.adapters.postgres.replay_ledger import ReplayLedger

    async def fetch() -> dict[DeadLetterId, datetime]:
        ledger = await ReplayLedger.connect(database_url)
        try:
            return await ledger.replayed(letter_ids)
        finally:
            await ledger.close()

    return asyncio.run(fetch())


ReasonOption = Annotated[str | None, typer.Option(help="only dead letters with this reason code")]
SourceTopicOption = Annotated[
    str | None, typer.Option(help="only dead letters from this topic (or http)")
]
SinceOption = Annotated[
    str | None, typer.Option(help="only dead letters rejected at or after this ISO time")
]


@dlq_cli.command("list")
def list_dead_letters(
    reason: ReasonOption = None,
    source_topic: SourceTopicOption = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option(min=1, help="show at most the newest N")] = 50,
) -> None:
    """List dead letters, newest last: id, reason, source, time, size and a masked preview."""
    settings = _settings()
    bootstrap = _bootstrap(settings)
    after = _since(since)
    with _clear_errors():
        found = [
            stored
            for stored in read_dead_letters(bootstrap)
            if _matches(stored, reason, source_topic, after)
        ]
        found.sort(key=lambda stored: (stored.letter.rejected_at, stored.letter_id))
        shown = found[-limit:]
        replayed = (
            _replayed(settings.database_url, [stored.letter_id for stored in shown])
            if settings.database_url and shown
            else {}
        )
    rows = [("id", "reason", "source", "rejected_at", "size", "replayed", "preview")]
    for stored in shown:
        letter = stored.letter
        when = replayed.get(stored.letter_id)
        rows.append(
            (
                str(stored.letter_id),
                letter.reason,
                _source(letter),
                letter.rejected_at.astimezone(UTC).isoformat(timespec="seconds"),
                str(len(letter.original_value)),
                when.astimezone(UTC).isoformat(timespec="seconds") if when else "-",
                preview(letter.original_value),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        typer.echo(mask_personal("  ".join([*padded, row[-1]])))
    typer.echo(f"{len(shown)} of {len(found)} dead letter(s)")


@dlq_cli.command()
def show(
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="PARTITION:OFFSET, as listed")],
    reveal: Annotated[
        bool,
        typer.Option(
            help="print the payload unmasked: this prints personal data (plain ID numbers)"
        ),
    ] = False,
) -> None:
    """Show one dead letter: its headers and original payload (ID numbers masked)."""
    settings = _settings()
    bootstrap = _bootstrap(settings)
    with _clear_errors():
        stored = read_dead_letter(bootstrap, DeadLetterId.parse(letter_id))
    letter = stored.letter
    key = as_text(letter.original_key) if letter.original_key is not None else "-"
    fields = [
        ("id", str(stored.letter_id)),
        ("reason", letter.reason),
        ("message", letter.message),
        ("source_topic", letter.source_topic),
        ("source_partition", str(letter.source_partition)),
        ("source_offset", str(letter.source_offset)),
        ("rejected_at", letter.rejected_at.isoformat()),
        ("size", f"{len(letter.original_value)} bytes"),
        ("key", key),
    ]
    for name, value in fields:
        typer.echo(f"{name + ':':<18}{value if reveal else mask_personal(value)}")
    typer.echo("payload:")
    typer.echo(pretty_payload(letter.original_value, reveal=reveal))


def _selected(
    bootstrap: str,
    ids: list[DeadLetterId],
    reason: str | None,
    source_topic: str | None,
    since: datetime | None,
) -> list[StoredDeadLetter]:
    if ids:
        letters = [read_dead_letter(bootstrap, letter_id) for letter_id in sorted(set(ids))]
        return [stored for stored in letters if _matches(stored, reason, source_topic, since)]
    return [
        stored
        for stored in read_dead_letters(bootstrap)
        if _matches(stored, reason, source_topic, since)
    ]


@dataclass
class ReplayReport:
    sent: list[str]
    already: list[str]
    skipped: list[str]


async def _replay(
    bootstrap: str, database_url: str, letters: list[StoredDeadLetter], *, dry_run: bool
) -> ReplayReport:
    from kafka import KafkaProducer
    from tqdm import tqdm

    from shared.adapters.postgres.replay_ledger import ReplayLedger

    report = ReplayReport([], [], [])
    ledger = await ReplayLedger.connect(database_url)
    producer = None if dry_run else KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        replayed = await ledger.replayed([stored.letter_id for stored in letters])
        for stored in tqdm(letters, desc="replaying", unit="letter", disable=not letters):
            letter, letter_id = stored.letter, stored.letter_id
            if letter_id in replayed:
                when = replayed[letter_id].astimezone(UTC).isoformat(timespec="seconds")
                report.already.append(f"{letter_id}: replayed already at {when}")
                continue
            try:
                target = replay_topic(letter)
            except NotReplayable as problem:
                report.skipped.append(f"{letter_id}: skipped, {problem}")
                continue
            if producer is None:
                report.sent.append(f"{letter_id}: would go to {target}")
                continue
            async with ledger.claim(
                letter_id,
                reason=letter.reason,
                source_topic=letter.source_topic,
                target_topic=target,
            ) as claim:
                if claim is None:
                    report.already.append(f"{letter_id}: replayed already (just now)")
                    continue
                metadata = producer.send(
                    target,
                    value=letter.original_value,
                    key=letter.original_key,
                    headers=[("replay_of", f"{topics.REJECTED}:{letter_id}".encode())],
                ).get(timeout=30)
                await claim.sent(metadata.partition, metadata.offset)
            report.sent.append(
                f"{letter_id}: sent to {target}:{metadata.partition}:{metadata.offset}"
            )
    finally:
        if producer is not None:
            producer.close()
        await ledger.close()
    return report


@dlq_cli.command()
def replay(
    reason: ReasonOption = None,
    source_topic: SourceTopicOption = None,
    since: SinceOption = None,
    ids: Annotated[
        list[str] | None,
        typer.Option(help="dead letters to replay, PARTITION:OFFSET (repeat or comma-separate)"),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="say what would be sent; send nothing")] = False,
) -> None:
    """Send dead letters' original bytes back to their source topic, each at most once.

    Use it after fixing what rejected them. Dead letters that came over HTTP go to
    the input topic of their kind. Replays are recorded in PostgreSQL.
    """
    settings = _settings()
    bootstrap = _bootstrap(settings)
    database_url = _database_url(settings)
    after = _since(since)
    if not (ids or reason or source_topic or after):
        raise _fail("say which dead letters to replay: --ids, --reason, --source-topic or --since")
    with _clear_errors():
        wanted = [
            DeadLetterId.parse(text) for item in ids or [] for text in item.split(",") if text
        ]
        letters = _selected(bootstrap, wanted, reason, source_topic, after)
        report = asyncio.run(_replay(bootstrap, database_url, letters, dry_run=dry_run))
    for line in [*report.sent, *report.already, *report.skipped]:
        typer.echo(line)
    verb = "would send" if dry_run else "sent"
    typer.echo(
        f"{verb} {len(report.sent)}, already replayed {len(report.already)}, "
        f"skipped {len(report.skipped)}"
    )
