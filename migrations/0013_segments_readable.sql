-- Segments (events.segments): a system-wide segment (stream `segment/<key>`, org_id NULL) is read by every
-- tenant, as the catalogue is, because every org's targeting rules may name it. An org's segments
-- (`org/<org>/segment/<key>`) are its own rows, under the tenant rule as they were.
DROP POLICY tenant_reads ON event_store;
CREATE POLICY tenant_reads ON event_store FOR SELECT
    USING (org_id = NULLIF(current_setting('flags.org_id', true), '')
           OR (org_id IS NULL AND (starts_with(stream, 'flag/') OR starts_with(stream, 'segment/'))));
