"""Reading the log: record decoding, dead letters, the fast decoder, hash-chain verification, Kafka options.

Pure (no Kafka, Postgres or Redis client; it imports `events`, `flagcore` and
pydantic): the projector, the rebuild, time travel, the in-process SDK and `flagctl`
read the log through this one package, so they accept and reject exactly the same
records; `flaglog.connection` is how every one of them is configured to reach it.
"""

from flaglog.dead_letters import DeadLetter
from flaglog.decoding import Decoded, decode_record
from flaglog.fastdecode import decode_event, decode_fast
from flaglog.records import RawRecord, TopicPartition, next_offsets
from flaglog.verification import LogRecord, LogVerifier, Problem, ProblemKind, Report, Severity, verify

__all__ = [
    "DeadLetter",
    "Decoded",
    "LogRecord",
    "LogVerifier",
    "Problem",
    "ProblemKind",
    "RawRecord",
    "Report",
    "Severity",
    "TopicPartition",
    "decode_event",
    "decode_fast",
    "decode_record",
    "next_offsets",
    "verify",
]
