-- Up Migration

-- Connector instances: a type (built-in name, npm package or path), its configuration (secrets only
-- as env:/file: references), and policies.
CREATE TABLE connectors (
  id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  type        text NOT NULL,
  config      jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- enforce: make the target match; monitor: only report drift.
  mode        text NOT NULL DEFAULT 'enforce' CHECK (mode IN ('enforce', 'monitor')),
  -- What deprovisioning does to the account: disable it or delete it.
  deprovision text NOT NULL DEFAULT 'disable' CHECK (deprovision IN ('disable', 'delete')),
  enabled     boolean NOT NULL DEFAULT true,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Grantable things in a target (a group, a team with a role, an org membership).
CREATE TABLE entitlements (
  id           uuid PRIMARY KEY,
  connector_id text NOT NULL REFERENCES connectors (id),
  name         text NOT NULL,
  target       jsonb NOT NULL,
  -- authoritative: reconcile removes holders we did not grant; additive: never removes them.
  membership   text NOT NULL DEFAULT 'additive' CHECK (membership IN ('authoritative', 'additive')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (connector_id, name)
);

-- Birthright rules: members of a SCIM group (nested included), or users matching a SCIM filter,
-- get the listed entitlements.
CREATE TABLE rules (
  id              uuid PRIMARY KEY,
  name            text NOT NULL UNIQUE,
  group_id        uuid REFERENCES groups (id),
  condition       text,
  entitlement_ids uuid[] NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CHECK ((group_id IS NULL) <> (condition IS NULL))
);

-- Desired state: who should have what, and why (reason: rule:<name>, manual, request:<id>).
CREATE TABLE grants (
  id             uuid PRIMARY KEY,
  user_id        uuid NOT NULL REFERENCES users (id),
  entitlement_id uuid NOT NULL REFERENCES entitlements (id),
  reason         text NOT NULL,
  valid_from     timestamptz NOT NULL DEFAULT now(),
  valid_until    timestamptz,
  status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  ended_at       timestamptz,
  UNIQUE (user_id, entitlement_id, reason)
);
CREATE INDEX grants_user_idx ON grants (user_id) WHERE status = 'active';
CREATE INDEX grants_entitlement_idx ON grants (entitlement_id) WHERE status = 'active';

-- Actual state: the user's account in each connector's target, and what was last applied.
CREATE TABLE accounts (
  user_id       uuid NOT NULL REFERENCES users (id),
  connector_id  text NOT NULL REFERENCES connectors (id),
  remote_id     text,
  -- none: no account yet (only an error so far); active, disabled, deleted: as in the target.
  state         text NOT NULL CHECK (state IN ('none', 'active', 'disabled', 'deleted')),
  last_sync_at  timestamptz,
  last_error    text,
  last_error_at timestamptz,
  workflow_id   text,
  PRIMARY KEY (user_id, connector_id)
);

-- Entitlements actually applied in the target, per user.
CREATE TABLE account_grants (
  user_id        uuid NOT NULL REFERENCES users (id),
  entitlement_id uuid NOT NULL REFERENCES entitlements (id),
  applied_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, entitlement_id)
);

-- Down Migration
DROP TABLE account_grants;
DROP TABLE accounts;
DROP TABLE grants;
DROP TABLE rules;
DROP TABLE entitlements;
DROP TABLE connectors;
