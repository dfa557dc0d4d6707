-- How many orgs override each flag, and with how many overrides (org, platform and user
-- level together). Row-level security keeps every query to one org's overrides, so this
-- count cannot be a query over `overrides`: the projector keeps it, in the same transaction
-- as the override rows it counts (services/projector/store.py), from each tenant's count of
-- the flag's overrides before and after the batch. A system table (no org_id, no RLS): it
-- holds numbers, never which orgs. A flag nobody overrides has no row.

CREATE TABLE flag_override_counts (
    flag_key   text PRIMARY KEY,
    orgs       integer NOT NULL,
    overrides  integer NOT NULL
);
-- No CHECK (orgs >= 0): the projector adds signed deltas with INSERT … ON CONFLICT, whose
-- proposed row is checked before the conflict is found. Tests hold the counts to the rows.

-- The projector counts one org's overrides of one flag before and after each batch.
CREATE INDEX overrides_org_flag ON overrides (org_id, flag_key);

-- Existing overrides: counted once here, by the owner, with RLS lifted for this transaction
-- only (the migration runs in one transaction, so no other session ever sees it lifted).
ALTER TABLE overrides NO FORCE ROW LEVEL SECURITY;
INSERT INTO flag_override_counts (flag_key, orgs, overrides)
SELECT flag_key, count(DISTINCT org_id), count(*) FROM overrides GROUP BY flag_key;
ALTER TABLE overrides FORCE ROW LEVEL SECURITY;

GRANT SELECT, INSERT, UPDATE, DELETE ON flag_override_counts TO flags_projector;
GRANT SELECT ON flag_override_counts TO flags_query;
