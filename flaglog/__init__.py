"""Reading the log: record decoding, dead letters, the fast decoder and hash-chain verification.

Pure (no Kafka, Postgres or Redis; it imports only `events` and `flagcore`): the
projector, the rebuild, the audit service, the in-process SDK and `flagctl` read
the log through this one package, so they accept and reject exactly the same records.
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
