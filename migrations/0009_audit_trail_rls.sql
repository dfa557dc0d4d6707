-- The audit trail under row-level security: `event_store` (every event of every org, which is
-- also the outbox), `snapshots` (each org's folded state) and `snapshot_runs`, ENABLEd and
-- FORCEd like the read models, so a query that forgets its WHERE still returns only what the
-- transaction's tenancy may see (services/infra/tenancy.py says the same rules in Python).
--
-- Two per-transaction settings, set together by services.infra.postgres.set_tenancy:
--   flags.org_id        the tenant ('' or unset: none)
--   flags.cross_tenant  'on' for the explicit system-wide reader (system admins and auditors,
--                       the relay, the snapshot job, the projection check), else '' or unset
-- Under a tenant: its rows, and the catalogue (system rows of `flag/` streams: definitions and
-- system defaults, which every org sees and which an org's write checks its flag against).
-- Under no tenant (the system): every system row (org_id NULL) whatever its stream
-- (`flag/…`, `key/…`, `subscription/…`). Cross-tenant: every row, read only, except that
-- the relay stamps `published_at` (the only column flags_command may UPDATE).
-- A row is added only under the tenancy that owns it: an org's under that org, a system
-- row under the system, none under cross-tenant. The command role has no DELETE.

ALTER TABLE event_store ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_store FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_reads ON event_store FOR SELECT
    USING (org_id = NULLIF(current_setting('flags.org_id', true), '')
           OR (org_id IS NULL AND starts_with(stream, 'flag/')));
CREATE POLICY system_reads ON event_store FOR SELECT
    USING (org_id IS NULL AND coalesce(current_setting('flags.org_id', true), '') = '');
CREATE POLICY cross_tenant_reads ON event_store FOR SELECT
    USING (current_setting('flags.cross_tenant', true) = 'on');
CREATE POLICY owner_appends ON event_store FOR INSERT
    WITH CHECK (org_id IS NOT DISTINCT FROM NULLIF(current_setting('flags.org_id', true), '')
                AND coalesce(current_setting('flags.cross_tenant', true), '') <> 'on');
CREATE POLICY relay_stamps ON event_store FOR UPDATE
    USING (current_setting('flags.cross_tenant', true) = 'on')
    WITH CHECK (current_setting('flags.cross_tenant', true) = 'on');

-- A snapshot part's scope is its org ('' for the system part: definitions and system defaults,
-- the catalogue every org reads). The snapshot job reads cross-tenant and adds each part
-- under the tenancy of its scope.
ALTER TABLE snapshots ENABLE ROW LEVEL SECURITY;
ALTER TABLE snapshots FORCE ROW LEVEL SECURITY;

CREATE POLICY scope_reads ON snapshots FOR SELECT
    USING (scope = coalesce(current_setting('flags.org_id', true), '') OR scope = ''
           OR current_setting('flags.cross_tenant', true) = 'on');
CREATE POLICY owner_adds ON snapshots FOR INSERT
    WITH CHECK (scope = coalesce(current_setting('flags.org_id', true), '')
                AND coalesce(current_setting('flags.cross_tenant', true), '') <> 'on');

-- A run is a system row: positions in the log and on Kafka, no tenant's data.
ALTER TABLE snapshot_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE snapshot_runs FORCE ROW LEVEL SECURITY;

CREATE POLICY system_reads ON snapshot_runs FOR SELECT
    USING (coalesce(current_setting('flags.org_id', true), '') = ''
           OR current_setting('flags.cross_tenant', true) = 'on');
CREATE POLICY system_adds ON snapshot_runs FOR INSERT
    WITH CHECK (coalesce(current_setting('flags.org_id', true), '') = ''
                AND coalesce(current_setting('flags.cross_tenant', true), '') <> 'on');
