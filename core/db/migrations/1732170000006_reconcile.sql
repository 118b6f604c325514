-- Up Migration

-- Outbox messages are no longer only about users: a connector's id is text.
ALTER TABLE outbox ALTER COLUMN aggregate_id TYPE text;

-- How often each connector is reconciled (a Temporal Schedule); NULL: only on demand.
ALTER TABLE connectors ADD COLUMN reconcile_every_minutes integer CHECK (reconcile_every_minutes > 0);

-- One reconciliation of one connector's target.
CREATE TABLE reconcile_runs (
  id              uuid PRIMARY KEY,
  connector_id    text NOT NULL REFERENCES connectors (id),
  dry_run         boolean NOT NULL,
  mode            text NOT NULL,
  workflow_id     text,
  started_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz,
  accounts_seen   integer NOT NULL DEFAULT 0,
  grants_seen     integer NOT NULL DEFAULT 0,
  api_calls       integer NOT NULL DEFAULT 0,
  drift_found     integer NOT NULL DEFAULT 0
);
CREATE INDEX reconcile_runs_connector_idx ON reconcile_runs (connector_id, started_at DESC);

-- What a run saw in the target, page by page, so comparing needs no memory of its own.
CREATE UNLOGGED TABLE reconcile_seen (
  run_id         uuid NOT NULL,
  entitlement_id uuid,
  remote_id      text NOT NULL,
  active         boolean
);
CREATE INDEX reconcile_seen_idx ON reconcile_seen (run_id, entitlement_id, remote_id);

-- Differences between desired/recorded state and the target, and what was done about them.
CREATE TABLE drift (
  id             bigserial PRIMARY KEY,
  run_id         uuid NOT NULL REFERENCES reconcile_runs (id),
  connector_id   text NOT NULL,
  kind           text NOT NULL CHECK (kind IN ('missingAccount', 'orphanAccount', 'missingMembership', 'unexpectedMembership')),
  user_id        uuid,
  remote_id      text,
  entitlement_id uuid,
  -- fixed: corrected (through the user's workflow, or directly for accounts no user owns);
  -- reported: left for a human (monitor mode, dry run, orphan accounts); ignored: additive membership.
  action         text NOT NULL CHECK (action IN ('fixed', 'reported', 'ignored')),
  detected_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX drift_run_idx ON drift (run_id, id);

-- Down Migration
DROP TABLE drift;
DROP TABLE reconcile_seen;
DROP TABLE reconcile_runs;
ALTER TABLE connectors DROP COLUMN reconcile_every_minutes;
ALTER TABLE outbox ALTER COLUMN aggregate_id TYPE uuid USING aggregate_id::uuid;
