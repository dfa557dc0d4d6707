-- Command side: every accepted change, in the order it was accepted.
-- The primary key (stream, version) IS the optimistic-concurrency check, and the
-- table doubles as the transactional outbox: the relay publishes rows whose
-- published_at is NULL, in sequence order, then stamps them.

CREATE SEQUENCE event_sequence AS bigint START 1;

CREATE TABLE event_store (
    stream         text        NOT NULL,
    version        integer     NOT NULL CHECK (version >= 1),
    sequence       bigint      NOT NULL UNIQUE,
    event_id       uuid        NOT NULL UNIQUE,
    type           text        NOT NULL,
    org_id         text,
    flag_key       text        NOT NULL,
    partition_key  text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    hash           text        NOT NULL,
    body           bytea       NOT NULL,   -- canonical JSON, exactly the bytes published
    published_at   timestamptz,
    PRIMARY KEY (stream, version)
);

CREATE INDEX event_store_unpublished ON event_store (sequence) WHERE published_at IS NULL;
CREATE INDEX event_store_org ON event_store (org_id, sequence);
CREATE INDEX event_store_flag ON event_store (flag_key, sequence);

GRANT SELECT, INSERT ON event_store TO flags_command;
GRANT UPDATE (published_at) ON event_store TO flags_command;
GRANT USAGE ON SEQUENCE event_sequence TO flags_command;
