"""Applying a batch of records exactly once: one transaction for read models and offsets.

`Projector.apply` is the whole use case, written against three ports (`ports`: the store,
the dead-letter sink and the invalidator) so tests can run it with fakes. It never
raises for a bad record: a record that cannot be decoded, or that Postgres rejects
as data, goes to the dead-letter topic. It raises `InfrastructureError` when a
dependency fails, after which the batch is redelivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from events.cloudevents import ID_HEADER
from flaglog import DeadLetter, Decoded, RawRecord, TopicPartition, decode_record, next_offsets
from services.infra.pg_errors import UNREACHABLE
from services.observability import tracing
from services.projector.cache_targets import CacheTarget
from services.projector.heads import Head, HeadCache
from services.projector.ports import DeadLetterSink, Invalidator, Store, Transaction
from services.projector.rows import stored_definition
from services.projector.tenant_plan import TenantPlan, group_by_tenant, plan_tenant

log = logging.getLogger(__name__)


class InfrastructureError(Exception):
    """A dependency (Postgres, Kafka) failed; the batch was not applied and will be retried."""


def is_data_error(exc: BaseException) -> bool:
    """The data itself was refused (SQLSTATE class 22 or 23, or not encodable): retrying cannot help."""
    return isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError | UnicodeError)


@dataclass(slots=True)
class BatchResult:
    records: int = 0
    skipped_offsets: int = 0  # below the stored offset: applied by an earlier batch
    applied: int = 0
    duplicates: int = 0
    chain_breaks: int = 0
    dead_letters: int = 0
    dead_letter_reasons: list[str] = field(default_factory=list)  # one per dead letter (the metrics count them)
    invalidations: set[CacheTarget] = field(default_factory=set)
    invalidated: bool = True


@dataclass(slots=True)
class Totals:
    batches: int = 0
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    chain_breaks: int = 0
    dead_letters: int = 0

    def add(self, r: BatchResult) -> None:
        self.batches += 1
        self.records += r.records
        self.applied += r.applied
        self.duplicates += r.duplicates
        self.chain_breaks += r.chain_breaks
        self.dead_letters += r.dead_letters


Decoder = Callable[[RawRecord], Decoded | DeadLetter | None]
MAX_LINKS = 32  # a batch span links at most this many other traces (the first traced record is its parent)


def _record_spans(traced: Sequence[tuple[str, str]], batch: tracing.OpenSpan, started_ns: int) -> None:
    """For each traced record the batch does not continue, a span in the record's own trace, as long as
    the batch and linked to it: so every traced change shows its projection, not only the first one's."""
    for traceparent, event_id in traced:
        if tracing.trace_id_of(traceparent) == batch.trace_id:
            continue
        attributes = {"messaging.system": "kafka", "event_id": event_id}
        record = tracing.start_span(
            "project record",
            parent=traceparent,
            links=[batch.traceparent],
            attributes=attributes,
            kind="consumer",
            start_time_ns=started_ns,
        )
        if record is not None:
            record.end()


def _traced(records: Sequence[RawRecord]) -> list[tuple[str, str]]:
    """(traceparent, event id) of each record that carries a valid trace context, in batch order."""
    found: list[tuple[str, str]] = []
    for record in records:
        headers = record.headers or ()
        for traceparent in tracing.traceparents(headers):
            event_id = next((v.decode("utf-8", "replace") for k, v in headers if k == ID_HEADER), "")
            found.append((traceparent, event_id))
            break
    return found


def _sort(
    records: Sequence[RawRecord], reject: str | None, decode: Decoder = decode_record
) -> tuple[list[Decoded], list[DeadLetter]]:
    decoded: list[Decoded] = []
    letters: list[DeadLetter] = []
    for record in records:
        item = DeadLetter.of(record, reject) if reject is not None else decode(record)
        if isinstance(item, DeadLetter):
            letters.append(item)
        elif item is not None:
            decoded.append(item)
    return decoded, letters


class Projector:
    def __init__(
        self,
        store: Store,
        dead_letters: DeadLetterSink,
        invalidator: Invalidator,
        *,
        retry_backoff: float = 1.0,
        progress_every: float = 5.0,
        decode: Decoder = decode_record,
    ) -> None:
        """`decode` must behave as `decode_record` (the rebuild passes its faster equivalent)."""
        self._store = store
        self._decode = decode
        self._heads = HeadCache()
        self._dead_letters = dead_letters
        self._invalidator = invalidator
        self._retry_backoff = retry_backoff
        self._progress_every = progress_every
        self.totals = Totals()
        self._window = Totals()
        self._window_started = self._last_end = time.monotonic()
        self._window_first_logged = False

    async def handle(self, records: Sequence[RawRecord]) -> BatchResult:
        """Apply a consumed batch. Raises `InfrastructureError` (after a backoff) to have it redelivered.

        Traced (`services.observability.tracing` on): the batch is a consumer span continuing the trace
        of its first traced record and linking the others' (up to `MAX_LINKS`), each of which gets a
        `project record` span of its own trace linked back to the batch; what the batch awaits (the Redis
        invalidation) is a child of it, and the traced records' events (as many) are logged with their traces.
        """
        if not tracing.enabled():
            return await self._handle(records)
        traced = _traced(records)
        parents = [traceparent for traceparent, _ in traced]
        attributes = {"messaging.system": "kafka", "messaging.batch.message_count": len(records)}
        started_ns = time.time_ns()
        with tracing.span(
            "project batch",
            parent=parents[0] if parents else None,
            links=parents[1 : 1 + MAX_LINKS],
            attributes=attributes,
            kind="consumer",
        ) as span:
            result = await self._handle(records)
            if span is not None:
                span.set("flagstream.applied", result.applied)
                span.set("flagstream.dead_letters", result.dead_letters)
        if span is not None:
            _record_spans(traced[1 : 1 + MAX_LINKS], span, started_ns)
        for traceparent, event_id in traced[: 1 + MAX_LINKS]:
            ids = {"event_id": event_id, "trace_id": tracing.trace_id_of(traceparent)}
            if span is not None and ids["trace_id"] == span.trace_id:
                ids["span_id"] = span.span_id
            log.info("projector: applied the batch holding event %s", event_id, extra=ids)
        if len(traced) > 1 + MAX_LINKS:
            log.info("projector: and %d more traced events in that batch", len(traced) - 1 - MAX_LINKS)
        return result

    async def _handle(self, records: Sequence[RawRecord]) -> BatchResult:
        started = time.monotonic()
        try:
            try:
                result = await self.apply(records)
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                log.warning("Postgres rejected a batch of %d records (%s); isolating the bad one", len(records), exc)
                result = await self._apply_one_by_one(records)
        except Exception as exc:
            log.error(
                "batch of %d records not applied, retrying in %.1fs: %r",
                len(records),
                self._retry_backoff,
                exc,
                exc_info=not isinstance(exc, UNREACHABLE),  # an outage is said in one line; anything else traced
            )
            await asyncio.sleep(self._retry_backoff)
            raise InfrastructureError(str(exc)) from exc
        self._account(result, started)
        return result

    async def apply(self, records: Sequence[RawRecord], *, reject: str | None = None) -> BatchResult:
        """One transaction: skip what is applied, decode, write per tenant, dead-letter, advance offsets.

        With `reject`, every new record goes to the dead letters with that reason instead.
        """
        result = BatchResult(records=len(records))
        if not records:
            return result
        try:
            async with self._store.batch() as tx:
                stored = await tx.lock_offsets(sorted(next_offsets(records)))
                empty = False if self._heads.started else await tx.nothing_projected()
                self._heads.track(stored, database_was_empty=empty)
                fresh = [r for r in records if r.offset >= stored[TopicPartition(r.topic, r.partition)]]
                decoded, letters = _sort(fresh, reject, self._decode)
                plans, heads = await self._plan(tx, decoded)
                letters += [DeadLetter.of(item.record, reason) for plan in plans for item, reason in plan.rejected]
                await tx.write(plans)
                if letters:  # acknowledged by Kafka before the offsets commit: a crash re-sends, never loses
                    await self._dead_letters.publish(letters)
                advanced = next_offsets(fresh)
                await tx.advance(advanced)
        except BaseException:
            self._heads.reset()  # the commit may or may not have happened
            raise
        self._heads.committed(heads, {tp: max(offset, advanced.get(tp, 0)) for tp, offset in stored.items()})
        result.skipped_offsets = len(records) - len(fresh)
        result.dead_letters = len(letters)
        result.dead_letter_reasons = [letter.reason for letter in letters]
        for plan in plans:
            result.applied += plan.applied
            result.duplicates += plan.duplicates
            result.chain_breaks += len(plan.chain_breaks)
            result.invalidations |= plan.invalidations
            for broken in plan.chain_breaks:
                log.warning("hash chain break, applied anyway: %s", broken)
        for letter in letters:
            log.warning("dead-lettered %s[%d]@%d: %s", letter.topic, letter.partition, letter.offset, letter.reason)
        if result.invalidations:
            result.invalidated = await self._invalidator.invalidate(sorted(result.invalidations))
        return result

    async def _plan(self, tx: Transaction, decoded: list[Decoded]) -> tuple[list[TenantPlan], dict[str, Head]]:
        """Per-tenant plans on the current heads (cached, else read); and every head now known."""
        groups = group_by_tenant(decoded)
        known: dict[str, Head] = {}
        wanted: dict[str | None, list[str]] = {}
        for org_id, items in groups.items():
            hits, missing = self._heads.lookup({i.envelope.stream for i in items})
            known.update(hits)
            if missing:
                wanted[org_id] = missing
        if wanted:
            known.update(await tx.heads(wanted))
        flag_keys: set[str] = {i.envelope.flag_key for i in groups.get(None, ()) if i.scope is None}  # type: ignore[misc]
        definitions = await tx.definitions(flag_keys) if flag_keys else {}
        plans = [plan_tenant(org_id, items, known, definitions) for org_id, items in groups.items()]
        for plan in plans:
            known.update(plan.heads)
        return plans, known

    async def _apply_one_by_one(self, records: Sequence[RawRecord]) -> BatchResult:
        total = BatchResult(records=len(records))
        for record in records:
            try:
                one = await self.apply([record])
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                one = await self.apply([record], reject=f"rejected by Postgres: {exc}")
            total.skipped_offsets += one.skipped_offsets
            total.applied += one.applied
            total.duplicates += one.duplicates
            total.chain_breaks += one.chain_breaks
            total.dead_letters += one.dead_letters
            total.dead_letter_reasons += one.dead_letter_reasons
            total.invalidations |= one.invalidations
            total.invalidated = total.invalidated and one.invalidated
        return total

    def _account(self, result: BatchResult, started: float) -> None:
        """INFO: the first batch after a quiet spell, then a summary every `progress_every` seconds."""
        now = time.monotonic()
        self.totals.add(result)
        quiet = self.totals.batches == 1 or started - self._last_end > self._progress_every
        if quiet and self._window.batches:
            self._flush(self._last_end)
        if self._window.batches == 0:
            self._window_started = started
            self._window_first_logged = quiet
        if quiet:
            log.info(
                "applied batch: %d records, %d events applied, %d duplicates, %d dead letters",
                result.records,
                result.applied,
                result.duplicates,
                result.dead_letters,
            )
        self._window.add(result)
        self._last_end = now
        if now - self._window_started >= self._progress_every:
            self._flush(now)

    def _flush(self, end: float) -> None:
        w = self._window
        elapsed = max(end - self._window_started, 1e-6)
        if w.batches > (1 if self._window_first_logged else 0):
            log.info(
                "projected %d records (%d applied) in %d batches over %.1fs: %.0f events/s; "
                "duplicates %d, chain breaks %d, dead letters %d; total applied %d",
                w.records,
                w.applied,
                w.batches,
                elapsed,
                w.records / elapsed,
                w.duplicates,
                w.chain_breaks,
                w.dead_letters,
                self.totals.applied,
            )
        self._window = Totals()


class RejectedByPostgres(Exception):
    """Postgres refused a checkpoint's rows as data (see `is_data_error`); nothing of it was kept."""


class FoldingProjector:
    """A rebuild's projector: batches folded per tenant in memory, written with their offsets at checkpoints.

    For a schema no one else writes (services/projector/rebuild/). `add` decodes a batch
    and plans it with `plan_tenant` on the stream heads and definitions it holds in memory,
    merging each tenant's plan into the one pending since the last checkpoint: the final row
    of every override, system default and definition, the final heads, and every history
    row. `checkpoint` writes that, the dead letters and the offsets after the last record
    added in one transaction, through the same store statements as `Projector.apply`: what
    `Projector.apply` would write for all those records as one batch. Between checkpoints
    nothing is stored, so a crash resumes from the last one.

    Heads and definitions not in memory are read from the store, unless nothing had been
    projected into it when this started (the live projector's `HeadCache.complete`).
    """

    def __init__(
        self,
        store: Store,
        dead_letters: DeadLetterSink,
        *,
        decode: Decoder = decode_record,
        max_heads: int = 2_000_000,
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._decode = decode
        self._max_heads = max_heads
        self._heads: dict[str, Head] = {}  # committed and pending: this process is the only writer
        self._definitions: dict[str, dict[str, Any]] = {}
        self._complete: bool | None = None  # None: not asked yet
        self._pending: dict[str | None, TenantPlan] = {}
        self._letters: list[DeadLetter] = []
        self._first: dict[TopicPartition, int] = {}  # each partition's first offset since the last checkpoint
        self._next: dict[TopicPartition, int] = {}
        self.pending = 0  # records added since the last checkpoint
        self.totals = Totals()

    async def add(self, records: Sequence[RawRecord]) -> None:
        """Decode and plan `records` (the next ones of their partitions) on what came before."""
        if not records:
            return
        if self._complete is None:
            async with self._store.batch() as tx:
                self._complete = await tx.nothing_projected()
        for r in records:
            self._first.setdefault(TopicPartition(r.topic, r.partition), r.offset)
        for tp, offset in next_offsets(records).items():
            self._next[tp] = max(offset, self._next.get(tp, 0))
        decoded, letters = _sort(records, None, self._decode)
        self._letters += letters
        groups = group_by_tenant(decoded)
        if not self._complete:
            await self._read_unknown(groups)
        for org_id, items in groups.items():
            wanted = {i.envelope.flag_key for i in items if i.scope is None}
            definitions = {k: self._definitions[k] for k in wanted if k in self._definitions}
            plan = plan_tenant(org_id, items, self._heads, definitions)
            self._heads.update(plan.heads)
            for flag_key, row in plan.definitions.items():
                self._definitions[flag_key] = stored_definition(row._asdict())  # as the next batch would read it
            self._letters += [DeadLetter.of(item.record, reason) for item, reason in plan.rejected]
            for broken in plan.chain_breaks:
                log.warning("hash chain break, applied anyway: %s", broken)
            pending = self._pending.get(org_id)
            if pending is None:
                self._pending[org_id] = plan
            else:
                pending.absorb(plan)
        self.pending += len(records)

    async def _read_unknown(self, groups: Mapping[str | None, Sequence[Decoded]]) -> None:
        """The stored heads and definitions this batch needs and memory lacks (all committed: none pending)."""
        wanted: dict[str | None, list[str]] = {}
        for org_id, items in groups.items():
            missing = {i.envelope.stream for i in items} - self._heads.keys()
            if missing:
                wanted[org_id] = sorted(missing)
        flag_keys: set[str] = {i.envelope.flag_key for i in groups.get(None, ()) if i.scope is None}  # type: ignore[misc]
        flag_keys -= self._definitions.keys()
        if not wanted and not flag_keys:
            return
        async with self._store.batch() as tx:
            if wanted:
                self._heads.update(await tx.heads(wanted))
            if flag_keys:
                self._definitions.update(await tx.definitions(flag_keys))

    async def checkpoint(self) -> BatchResult:
        """Write what was added since the last checkpoint, and the offsets after it, in one transaction.

        Raises `RejectedByPostgres` for a data error (nothing written; this projector is then
        spent), `InfrastructureError` when the partitions were advanced by someone else.
        """
        result = BatchResult(records=self.pending)
        if not self._next:
            return result
        plans = list(self._pending.values())
        try:
            async with self._store.batch() as tx:
                stored = await tx.lock_offsets(sorted(self._next))
                overtaken = [tp for tp, first in self._first.items() if stored[tp] > first]
                if overtaken:
                    raise InfrastructureError(f"{overtaken} were applied by another consumer during this fold")
                await tx.write(plans)
                if self._letters:
                    await self._dead_letters.publish(self._letters)
                await tx.advance(self._next)
        except Exception as exc:
            if is_data_error(exc):
                raise RejectedByPostgres(str(exc)) from exc
            raise
        result.dead_letters = len(self._letters)
        for plan in plans:
            result.applied += plan.applied
            result.duplicates += plan.duplicates
            result.chain_breaks += len(plan.chain_breaks)
        self.totals.add(result)
        self._pending, self._letters, self._first, self.pending = {}, [], {}, 0
        if len(self._heads) > self._max_heads:  # all of them are stored now: read again when needed
            self._heads, self._definitions, self._complete = {}, {}, False
        return result
