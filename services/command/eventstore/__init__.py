"""The event store's one home: every SQL statement over `event_store`, `snapshots` and `snapshot_runs`.

`writes` appends (the optimistic-concurrency check, the outbox and the relay's lease),
`audit_reads` pages the history and reads stream values as of an instant or a version,
`snapshot_store` serves time travel and the snapshot job, `segment_store` the segment routes
(segments read from their streams' heads, an archive refused while rules name the segment).
All connect as `flags_command`,
and asyncpg's exceptions stop at `driver_errors`. The three tables are under row-level
security (migration 0009): every statement runs under a `services.infra.tenancy.Tenancy`,
the caller's for reads (`reading_as`), the owner's of the rows for writes (`writer_for`),
and cross-tenant, by name, for the relay and the snapshot job.
"""
