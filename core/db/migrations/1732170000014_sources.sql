-- Up Migration

-- Identity sources the gateway reads users from when they cannot push SCIM (Auth0): the type, its
-- configuration (secrets only as env:/file: references) and how often the import runs.
CREATE TABLE sources (
  id                   text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  type                 text NOT NULL CHECK (type IN ('auth0')),
  config               jsonb NOT NULL,
  import_every_minutes integer CHECK (import_every_minutes > 0),
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);

-- The source that owns a user (NULL: pushed over SCIM). A source user's externalId is its id in
-- the source, unique per source among live users.
ALTER TABLE users ADD COLUMN source_id text REFERENCES sources (id);
CREATE UNIQUE INDEX users_source_external_key ON users (source_id, external_id) WHERE source_id IS NOT NULL AND deleted_at IS NULL;

-- One import of a source's users.
CREATE TABLE source_import_runs (
  id          uuid PRIMARY KEY,
  source_id   text NOT NULL REFERENCES sources (id),
  workflow_id text,
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  seen        integer NOT NULL DEFAULT 0,
  created     integer NOT NULL DEFAULT 0,
  updated     integer NOT NULL DEFAULT 0,
  deleted     integer NOT NULL DEFAULT 0,
  conflicts   integer NOT NULL DEFAULT 0
);
CREATE INDEX source_import_runs_source_idx ON source_import_runs (source_id, started_at DESC);

-- The source ids an import run has read, so users no longer in the source can be found in SQL.
CREATE UNLOGGED TABLE source_import_seen (
  run_id      uuid NOT NULL,
  external_id text NOT NULL,
  PRIMARY KEY (run_id, external_id)
);

-- A source user that could not be imported because a user pushed over SCIM (or another source's)
-- already holds its userName. Kept while the clash lasts; resolved_at set when it no longer does.
CREATE TABLE source_conflicts (
  source_id     text NOT NULL REFERENCES sources (id),
  external_id   text NOT NULL,
  user_name     text NOT NULL,
  holder_id     uuid REFERENCES users (id),
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  resolved_at   timestamptz,
  resolution    text,
  PRIMARY KEY (source_id, external_id)
);
CREATE INDEX source_conflicts_open_idx ON source_conflicts (source_id) WHERE resolved_at IS NULL;

-- Log events a source pushed (Auth0 Log Streams), one row per log id: a redelivered event is
-- recognized and not applied again.
CREATE TABLE source_log_events (
  source_id   text NOT NULL REFERENCES sources (id),
  log_id      text NOT NULL,
  type        text,
  subject     text,
  received_at timestamptz NOT NULL DEFAULT now(),
  applied_at  timestamptz,
  outcome     text,
  error       text,
  PRIMARY KEY (source_id, log_id)
);
CREATE INDEX source_log_events_pending_idx ON source_log_events (source_id, received_at) WHERE applied_at IS NULL;

-- Down Migration
DROP TABLE source_log_events;
DROP TABLE source_conflicts;
DROP TABLE source_import_seen;
DROP TABLE source_import_runs;
DROP INDEX users_source_external_key;
ALTER TABLE users DROP COLUMN source_id;
DROP TABLE sources;
