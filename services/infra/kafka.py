"""Kafka plumbing: the topics (created explicitly, infinite retention), the producer, the broker's security.

Every client connects with `flaglog.connection.client_options(settings)`;
`broker_security(settings)` says the same to a FastStream `KafkaBroker`, which maps
it back onto those arguments.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from flaglog.connection import KafkaConnection, KafkaSaslMechanism, client_options
from services.infra.settings import Settings

__all__ = ["broker_security", "create_producer", "ensure_topics", "probe", "topic_partitions"]

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36

_FASTSTREAM_SASL = {
    KafkaSaslMechanism.SCRAM_SHA_256: SASLScram256,
    KafkaSaslMechanism.SCRAM_SHA_512: SASLScram512,
    KafkaSaslMechanism.PLAIN: SASLPlaintext,
}


def broker_security(connection: KafkaConnection) -> BaseSecurity | None:
    """The same settings as a FastStream `security=` object (None: PLAINTEXT, FastStream's default)."""
    protocol = connection.kafka_security_protocol
    context = connection.ssl_context() if protocol.uses_tls else None
    if protocol.uses_sasl:
        username, password = connection.sasl_credentials()
        sasl = _FASTSTREAM_SASL[connection.kafka_sasl_mechanism]
        return sasl(username, password, ssl_context=context, use_ssl=protocol.uses_tls)
    if protocol.uses_tls:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None


async def ensure_topics(settings: Settings) -> None:
    """Create the change topic and its dead-letter topic if missing.

    Retention is infinite: the change topic is the audit trail.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()  # inside: a refused start (bad credentials) still closes the client
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
        **client_options(settings),
        enable_idempotence=True,
        acks="all",
        linger_ms=0,  # 2 ms of linger cost 2-3 ms of propagation; sends queued behind an in-flight request still batch
        request_timeout_ms=10_000,
    )


async def probe(producer: AIOKafkaProducer) -> None:
    """One metadata round trip on the producer's own client: raises unless the cluster answers now."""
    await producer.client.fetch_all_metadata()


async def topic_partitions(settings: KafkaConnection, topic: str) -> list[int]:
    """The topic's partitions, as the cluster describes them (none when it does not exist)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for p in described.get("partitions") or ())
