-- Read side, written only by the projector. Tenant tables carry org_id and are
-- protected by row-level security on the per-transaction setting flags.org_id;
-- FORCE makes the policies bind the table owner too. With no org set, a
-- session sees no tenant rows at all (fail closed).

CREATE TABLE flags (
    flag_key     text PRIMARY KEY,
    kind         text        NOT NULL,
    description  text        NOT NULL,
    owner        text,
    grp          text        NOT NULL,
    archived     boolean     NOT NULL DEFAULT false,
    version      integer     NOT NULL,
    event_id     uuid        NOT NULL,
    actor        text        NOT NULL,
    reason       text        NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE system_defaults (
    flag_key            text PRIMARY KEY,
    enabled             boolean,
    rollout_percentage  integer CHECK (rollout_percentage BETWEEN 0 AND 100),
    stream              text        NOT NULL,
    version             integer     NOT NULL,
    event_id            uuid        NOT NULL,
    actor               text        NOT NULL,
    reason              text        NOT NULL,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE overrides (
    org_id              text        NOT NULL,
    level               text        NOT NULL CHECK (level IN ('org', 'platform', 'user')),
    platform            text        NOT NULL DEFAULT '',
    user_id             text        NOT NULL DEFAULT '',
    flag_key            text        NOT NULL,
    enabled             boolean,
    rollout_percentage  integer CHECK (rollout_percentage BETWEEN 0 AND 100),
    stream              text        NOT NULL,
    version             integer     NOT NULL,
    event_id            uuid        NOT NULL,
    actor               text        NOT NULL,
    reason              text        NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (org_id, level, platform, user_id, flag_key)
);

-- Last applied version and hash per stream: makes re-delivered or re-published
-- events no-ops and lets the projector check the hash chain as it goes.
CREATE TABLE stream_heads (
    stream   text PRIMARY KEY,
    org_id   text,
    version  integer NOT NULL,
    hash     text    NOT NULL
);

CREATE TABLE flag_history (
    event_id     uuid PRIMARY KEY,
    sequence     bigint      NOT NULL,
    org_id       text,
    stream       text        NOT NULL,
    version      integer     NOT NULL,
    type         text        NOT NULL,
    flag_key     text        NOT NULL,
    level        text,
    platform     text,
    user_id      text,
    actor_id     text        NOT NULL,
    actor_name   text        NOT NULL,
    reason       text        NOT NULL,
    previous     jsonb,
    new          jsonb,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX flag_history_org ON flag_history (org_id, sequence);
CREATE INDEX flag_history_flag ON flag_history (flag_key, sequence);

-- Consumed positions, committed in the same transaction as the effects.
CREATE TABLE projector_offsets (
    consumer_group  text    NOT NULL,
    topic           text    NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint  NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

ALTER TABLE overrides ENABLE ROW LEVEL SECURITY;
ALTER TABLE overrides FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON overrides
    USING (org_id = current_setting('flags.org_id', true))
    WITH CHECK (org_id = current_setting('flags.org_id', true));

-- System-level rows (org_id NULL) are shared by every tenant.
ALTER TABLE stream_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stream_heads
    USING (org_id IS NULL OR org_id = current_setting('flags.org_id', true))
    WITH CHECK (org_id IS NULL OR org_id = current_setting('flags.org_id', true));

ALTER TABLE flag_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE flag_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON flag_history
    USING (org_id IS NULL OR org_id = current_setting('flags.org_id', true))
    WITH CHECK (org_id IS NULL OR org_id = current_setting('flags.org_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON flags, system_defaults, overrides, stream_heads,
    flag_history, projector_offsets TO flags_projector;
GRANT SELECT ON flags, system_defaults, overrides, flag_history TO flags_query;
