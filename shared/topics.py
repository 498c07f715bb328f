"""Kafka topic names of the public contract and the internal ones past validation."""

from __future__ import annotations

from shared.domain.vocabulary import Kind

SCAN_KINDS = tuple(kind.value for kind in Kind)
INPUT_TOPICS = {kind: f"scans.{kind}" for kind in SCAN_KINDS}
KIND_BY_TOPIC = {topic: kind for kind, topic in INPUT_TOPICS.items()}

REJECTED = "scans.rejected"
HEALTHCODE_UPDATES = "healthcode.updates"
# Past validation: pseudonymised, keyed by worker_ref, no plain ID number.
ACCEPTED = "scans.accepted"
HEALTHCODE_ACCEPTED = "healthcode.accepted"
# Dispositions recorded over the API, keyed by worker_ref, applied like scans.
DISPOSITIONS = "dispositions.accepted"
TRANSITIONS = "loop.transitions"
ALERTS = "loop.alerts"

# Topics carrying plain ID numbers get a short retention.
PLAIN_ID_TOPICS = (*INPUT_TOPICS.values(), REJECTED, HEALTHCODE_UPDATES)
KEYED_TOPICS = (ACCEPTED, HEALTHCODE_ACCEPTED, DISPOSITIONS, TRANSITIONS, ALERTS)
ALL_TOPICS = (*PLAIN_ID_TOPICS, *KEYED_TOPICS)
