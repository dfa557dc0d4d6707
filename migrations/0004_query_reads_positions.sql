-- The in-process SDK bootstraps from the query service: the org's read models, the
-- stream heads they were folded to, and the topic offsets that state covers, read in
-- one snapshot (services/query/bootstrap.py). stream_heads keeps its RLS (system rows
-- and the caller's org only); projector_offsets holds positions, no tenant data.

GRANT SELECT ON stream_heads, projector_offsets TO flags_query;
