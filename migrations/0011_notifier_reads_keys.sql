-- The notifier serves its delivery log, its dead letters and "retry now" over HTTP
-- (services/notifier/api.py) under the same API keys as the other services: it reads the key
-- records, and marks when a key was last used, as the query service does.

GRANT SELECT (key_id, name, role, org_id, secret_hash, expires_at, revoked_at) ON api_keys TO flags_notifier;
GRANT UPDATE (last_used_at) ON api_keys TO flags_notifier;
