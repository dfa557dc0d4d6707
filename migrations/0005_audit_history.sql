-- History paging that cannot skip a row. `sequence` is taken from event_sequence before
-- the append commits, so a lower sequence can become visible after a higher one: paging
-- "after sequence N" would miss it. Each row also records the id of the transaction that
-- wrote it; history pages in (tx, sequence) order and shows only rows whose transaction
-- is older than every transaction still running (pg_snapshot_xmin), so no row can ever
-- appear behind a cursor already handed out (services/command/eventstore/audit_reads.py).
-- The relay's UPDATE of published_at does not touch tx (unlike the system column xmin).

ALTER TABLE event_store ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX event_store_tx ON event_store (tx, sequence);
CREATE INDEX event_store_occurred ON event_store (occurred_at);
