"""Topic provisioning with kafka-python's admin client (a sync tool)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError
from tenacity import retry, stop_after_delay, wait_exponential

from shared import topics

logger = logging.getLogger(__name__)


@retry(stop=stop_after_delay(60), wait=wait_exponential(max=5), reraise=True)
def _admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="returnloop-admin")


def ensure_topics(
    bootstrap: str,
    *,
    partitions: int,
    replication: int = 1,
    input_retention_hours: float = 72.0,
    names: Iterable[str] = topics.ALL_TOPICS,
) -> list[str]:
    """Create the missing topics; return the names created. Existing ones are left alone.

    Topics that carry plain ID numbers (input, dead letters) get a short retention.
    """
    admin = _admin(bootstrap)
    try:
        existing = set(admin.list_topics())
        wanted = [name for name in names if name not in existing]
        retention_ms = str(int(input_retention_hours * 3600 * 1000))
        new_topics = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication,
                topic_configs={"retention.ms": retention_ms}
                if name in topics.PLAIN_ID_TOPICS
                else {},
            )
            for name in wanted
        ]
        created = []
        for topic in new_topics:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        if created:
            logger.info("topics created", extra={"topics": created})
        return created
    finally:
        admin.close()
