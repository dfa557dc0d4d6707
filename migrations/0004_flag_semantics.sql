-- Flag semantics: an ops flag's kill switch, experiment variants and an expiry on
-- definitions; the pending scheduled steps of every setting (JSON, in time order,
-- as the stream value holds them: [{"at", "enabled", "rollout_percentage"}]).
-- Added at the end of each table, so the projector's `LIKE` staging tables and its
-- `INSERT … SELECT *` keep their column order.

ALTER TABLE flags
    ADD COLUMN killed     boolean     NOT NULL DEFAULT false,
    ADD COLUMN variants   jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN expires_at timestamptz;

ALTER TABLE system_defaults ADD COLUMN schedule jsonb;
ALTER TABLE overrides ADD COLUMN schedule jsonb;

-- "What is scheduled" per org: only rows with pending steps.
CREATE INDEX overrides_scheduled ON overrides (org_id, flag_key) WHERE schedule IS NOT NULL;
