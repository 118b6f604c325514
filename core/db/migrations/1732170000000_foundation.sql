-- Up Migration

-- API tokens: only a SHA-256 digest of each token is kept (see core/auth/tokens.ts).
CREATE TABLE api_tokens (
  id           uuid PRIMARY KEY,
  name         text NOT NULL,
  scopes       text[] NOT NULL,
  token_hash   bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at   timestamptz
);
CREATE UNIQUE INDEX api_tokens_hash_key ON api_tokens (token_hash);
CREATE UNIQUE INDEX api_tokens_active_name_key ON api_tokens (name) WHERE revoked_at IS NULL;

-- Directory: SCIM users. `resource` holds the SCIM representation (without id and meta); the
-- columns beside it are the attributes the gateway indexes, searches and constrains.
CREATE TABLE users (
  id           uuid PRIMARY KEY,
  user_name    text NOT NULL,
  external_id  text,
  display_name text,
  active       boolean NOT NULL DEFAULT true,
  resource     jsonb NOT NULL,
  version      bigint NOT NULL DEFAULT 1,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  -- DELETE hides a user from SCIM but keeps the row so deprovisioning and audit can still see it.
  deleted_at   timestamptz
);
-- userName is unique case-insensitively among live users (RFC 7643 §4.1: caseExact false).
CREATE UNIQUE INDEX users_user_name_key ON users (lower(user_name)) WHERE deleted_at IS NULL;
CREATE INDEX users_external_id_idx ON users (external_id) WHERE deleted_at IS NULL;

-- Transactional outbox: written in the same transaction as the change it announces, delivered to
-- Temporal by the gateway's dispatcher (gateway/outbox/dispatcher.ts).
CREATE TABLE outbox (
  id            bigserial PRIMARY KEY,
  topic         text NOT NULL,
  aggregate_id  uuid NOT NULL,
  payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at    timestamptz NOT NULL DEFAULT now(),
  attempts      integer NOT NULL DEFAULT 0,
  claimed_by    text,
  claimed_until timestamptz,
  delivered_at  timestamptz,
  last_error    text
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_aggregate_idx ON outbox (aggregate_id, id);

-- What the userSync workflow last applied for each user.
CREATE TABLE user_sync_state (
  user_id     uuid PRIMARY KEY REFERENCES users (id),
  synced_seq  bigint NOT NULL,
  synced_at   timestamptz NOT NULL DEFAULT now(),
  workflow_id text NOT NULL,
  run_id      text NOT NULL,
  syncs       integer NOT NULL DEFAULT 1
);

-- Append-only audit trail: who changed what, through which credential, and why.
CREATE TABLE audit_events (
  id            bigserial PRIMARY KEY,
  at            timestamptz NOT NULL DEFAULT now(),
  actor         text NOT NULL,
  action        text NOT NULL,
  resource_type text NOT NULL,
  resource_id   text,
  reason        text,
  before        jsonb,
  after         jsonb
);
CREATE INDEX audit_events_resource_idx ON audit_events (resource_type, resource_id, id);
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- Down Migration
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP TABLE user_sync_state;
DROP TABLE outbox;
DROP TABLE users;
DROP TABLE api_tokens;
