"""Kafka plumbing: the topics (created explicitly, infinite retention) and the producer."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.infra.settings import Settings

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(settings: Settings) -> None:
    """Create the change topic and its dead-letter topic if missing.

    Retention is infinite: the change topic is the audit trail.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        configs = {"retention.ms": "-1", "cleanup.policy": "delete"}
        response = await admin.create_topics(
            [
                NewTopic(settings.topic, settings.topic_partitions, 1, topic_configs=configs),
                NewTopic(settings.dead_letter_topic, 1, 1, topic_configs=configs),
            ]
        )
        for topic, code, *rest in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"cannot create Kafka topic {topic}: error {code} {rest}")
            if code == 0:
                log.info("created topic %s", topic)
    finally:
        await admin.close()


def create_producer(settings: Settings) -> AIOKafkaProducer:
    """Idempotent, acks=all: a retried send never duplicates or reorders a partition."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        request_timeout_ms=10_000,
    )
