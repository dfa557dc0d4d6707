-- API keys. Written only by the command service, in the same transaction as the
-- ApiKeyCreated / ApiKeyRevoked / ApiKeyExpirySet event that records the change;
-- read by both HTTP services to authenticate. The projector has no access at all.
-- Only the SHA-256 of each key is stored; the key itself is shown once at creation.

ALTER TABLE event_store ALTER COLUMN flag_key DROP NOT NULL;

CREATE TABLE api_keys (
    key_id        text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    name          text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('system-admin', 'org-admin', 'auditor', 'evaluator')),
    org_id        text,
    secret_hash   text        NOT NULL,
    created_at    timestamptz NOT NULL,
    created_by    text        NOT NULL,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX api_keys_org ON api_keys (org_id);

GRANT SELECT, INSERT, UPDATE ON api_keys TO flags_command;
GRANT SELECT (key_id, name, role, org_id, secret_hash, expires_at, revoked_at) ON api_keys TO flags_query;
GRANT UPDATE (last_used_at) ON api_keys TO flags_query;
