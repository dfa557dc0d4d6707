-- Targeting rules (TargetingRulesSet): one row per rule list, the system's for a flag (org_id NULL)
-- or one org's, keyed by its stream (`flag/{key}/system/rules`, `org/{org}/flag/{key}/rules`).
-- `rules` is the stream value's list as `flagcore.transition` writes it ([{id, conditions, variant | split}]);
-- an emptied list has no row. Written only by the projector; read by the query service into the
-- catalogue document (system rows) and the org's document (its rows).
--
-- Under row-level security, ENABLEd and FORCEd as `stream_heads` and `flag_history` are: system rows
-- are visible to every tenant context (the catalogue every org evaluates with), an org's rows only
-- under that org. No org set: the system rows alone.

CREATE TABLE targeting_rules (
    stream      text PRIMARY KEY,
    org_id      text,
    flag_key    text        NOT NULL,
    rules       jsonb       NOT NULL CHECK (jsonb_typeof(rules) = 'array'),
    version     integer     NOT NULL,
    event_id    uuid        NOT NULL,
    actor       text        NOT NULL,
    reason      text        NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX targeting_rules_org ON targeting_rules (org_id, flag_key);

ALTER TABLE targeting_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE targeting_rules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON targeting_rules
    USING (org_id IS NULL OR org_id = current_setting('flags.org_id', true))
    WITH CHECK (org_id IS NULL OR org_id = current_setting('flags.org_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON targeting_rules TO flags_projector;
GRANT SELECT ON targeting_rules TO flags_query;
