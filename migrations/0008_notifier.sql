-- The notifier's records (services/notifier/store.py): the delivery log, each event's outcome per
-- subscription, and dead letters. The topic offset of the notifier's consumer group moves past an
-- event only once its outcome is here, and an event with an outcome is never sent again.
--
-- org_id is the subscription's org; NULL for a system-wide subscription. Row-level security keeps
-- them apart both ways: a transaction scoped to an org sees only that org's rows, and one scoped to
-- no org (flags.org_id '' or unset) sees only the system-wide rows.

CREATE TABLE notifier_attempts (
    id               bigserial PRIMARY KEY,
    subscription_id  text NOT NULL,
    org_id           text,
    event_ids        uuid[] NOT NULL,
    attempt          integer NOT NULL CHECK (attempt >= 1),
    status           text NOT NULL CHECK (status IN ('delivered', 'failed', 'refused')),
    http_status      integer,
    latency_ms       double precision NOT NULL,
    error            text,
    response         text NOT NULL DEFAULT '',
    attempted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifier_attempts_latest ON notifier_attempts (subscription_id, id DESC);

CREATE TABLE notifier_outcomes (
    subscription_id  text NOT NULL,
    event_id         uuid NOT NULL,
    org_id           text,
    outcome          text NOT NULL CHECK (outcome IN ('delivered', 'dead')),
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, event_id)
);

CREATE TABLE notifier_dead_letters (
    id               bigserial PRIMARY KEY,
    subscription_id  text NOT NULL,
    org_id           text,
    event_ids        uuid[] NOT NULL,
    body             bytea NOT NULL,
    reason           text NOT NULL,
    attempts         integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    retried_at       timestamptz
);
CREATE INDEX notifier_dead_letters_subscription ON notifier_dead_letters (subscription_id, id DESC);

ALTER TABLE notifier_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE notifier_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notifier_attempts
    USING (org_id IS NOT DISTINCT FROM NULLIF(current_setting('flags.org_id', true), ''))
    WITH CHECK (org_id IS NOT DISTINCT FROM NULLIF(current_setting('flags.org_id', true), ''));

ALTER TABLE notifier_outcomes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notifier_outcomes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notifier_outcomes
    USING (org_id IS NOT DISTINCT FROM NULLIF(current_setting('flags.org_id', true), ''))
    WITH CHECK (org_id IS NOT DISTINCT FROM NULLIF(current_setting('flags.org_id', true), ''));

ALTER TABLE notifier_dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE notifier_dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notifier_dead_letters
    USING (org_id IS NOT DISTINCT FROM NULLIF(current_setting('flags.org_id', true), ''))
    WITH CHECK (org_id IS NOT DISTINCT FROM NULLIF(current_setting('flags.org_id', true), ''));

GRANT SELECT, INSERT, DELETE ON notifier_attempts, notifier_outcomes TO flags_notifier;
GRANT SELECT, INSERT, UPDATE ON notifier_dead_letters TO flags_notifier;
GRANT USAGE ON SEQUENCE notifier_attempts_id_seq, notifier_dead_letters_id_seq TO flags_notifier;
