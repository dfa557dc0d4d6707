-- Snapshots of the folded state, so time travel (and anything else that folds the log)
-- starts from the nearest one instead of the first event. One row per scope ('' for
-- definitions and system defaults, else an org id) per snapshot position: `state` is
-- that scope's part of the fold of every flag event with sequence <= `sequence`
-- (flagcore.history.snapshot), `events` how many such events there were, and
-- `covered_until` the latest occurred_at among all events <= `sequence`, so a snapshot
-- may serve an instant T only when covered_until <= T. Before use, the heads in `state`
-- are checked against event_store (hash of each stream's last covered event) and
-- `events` against a count, so a snapshot never hides an altered or late log.
-- `snapshot_runs` records each run's position: event-store sequence and, per Kafka
-- partition, the next offset after the last record the run covered.

CREATE TABLE snapshots (
    scope          text        NOT NULL,
    sequence       bigint      NOT NULL,
    covered_until  timestamptz NOT NULL,
    events         integer     NOT NULL CHECK (events >= 0),
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, sequence)
);
CREATE INDEX snapshots_scope_covered ON snapshots (scope, covered_until);

CREATE TABLE snapshot_runs (
    sequence       bigint      PRIMARY KEY,
    covered_until  timestamptz NOT NULL,
    kafka_offsets  jsonb       NOT NULL,   -- {"<partition>": next offset}
    taken_at       timestamptz NOT NULL DEFAULT now()
);

-- The command service serves time travel and runs the snapshot job: it reads and adds
-- snapshots, never changes or removes one.
GRANT SELECT, INSERT ON snapshots, snapshot_runs TO flags_command;
