-- Up Migration

-- A personal token acts as its own directory user only (NULL: a token of no person).
ALTER TABLE api_tokens ADD COLUMN user_id uuid REFERENCES users (id);

-- The catalogue: what people may ask for and how a request is decided and fulfilled. `entitlement_id`
-- is NULL for a manual-only resource with no connector. `stages` holds the serial approval stages as
-- the API validated them (users and groups resolved to ids).
CREATE TABLE access_policies (
  id                     uuid PRIMARY KEY,
  name                   text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  entitlement_id         uuid REFERENCES entitlements (id),
  display_name           text NOT NULL,
  description            text,
  aliases                text[] NOT NULL DEFAULT '{}',
  owner_user_ids         uuid[] NOT NULL DEFAULT '{}',
  owner_group_id         uuid REFERENCES groups (id),
  eligibility_filter     text,
  eligibility_group_id   uuid REFERENCES groups (id),
  default_duration_s     integer CHECK (default_duration_s > 0),
  max_duration_s         integer CHECK (max_duration_s > 0),
  permanent_allowed      boolean NOT NULL DEFAULT false,
  justification_required boolean NOT NULL DEFAULT false,
  fulfilment             text NOT NULL CHECK (fulfilment IN ('automatic', 'manual')),
  fulfilment_group_id    uuid REFERENCES groups (id),
  fulfilment_instructions text,
  stages                 jsonb NOT NULL DEFAULT '[]'::jsonb,
  request_ttl_s          integer CHECK (request_ttl_s > 0),
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  CHECK (fulfilment = 'manual' OR entitlement_id IS NOT NULL)
);

-- One request per ask. `policy` is the policy as it was when the request was made, so editing a
-- policy never changes how a pending request is decided.
CREATE TABLE access_requests (
  id              uuid PRIMARY KEY,
  policy_id       uuid NOT NULL REFERENCES access_policies (id),
  policy          jsonb NOT NULL,
  requester_id    uuid NOT NULL REFERENCES users (id),
  justification   text,
  duration_s      integer,
  status          text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'approved', 'rejected', 'cancelled', 'expired', 'fulfilled', 'failed', 'revoked')),
  stage           integer NOT NULL DEFAULT 0,
  status_reason   text,
  created_by      text NOT NULL,
  grant_id        uuid REFERENCES grants (id),
  -- An extension: the fulfilled request whose time-bound access this one prolongs.
  extends_id      uuid REFERENCES access_requests (id),
  created_at      timestamptz NOT NULL DEFAULT now(),
  decided_at      timestamptz,
  fulfilled_at    timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_requests_requester_idx ON access_requests (requester_id, created_at DESC);
CREATE UNIQUE INDEX access_requests_one_pending_key ON access_requests (policy_id, requester_id) WHERE status = 'pending';

-- Who may decide each stage, as resolved when the stage opened.
CREATE TABLE access_request_stages (
  request_id   uuid NOT NULL REFERENCES access_requests (id),
  stage        integer NOT NULL,
  approver_ids uuid[] NOT NULL,
  resolution   text NOT NULL,
  status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'approved', 'rejected', 'skipped', 'closed')),
  opened_at    timestamptz NOT NULL DEFAULT now(),
  closed_at    timestamptz,
  PRIMARY KEY (request_id, stage)
);
CREATE INDEX access_request_stages_open_idx ON access_request_stages USING gin (approver_ids) WHERE status = 'open';

-- Every decision, and every refused attempt at one (with why it was refused).
CREATE TABLE access_request_decisions (
  id          bigserial PRIMARY KEY,
  request_id  uuid NOT NULL REFERENCES access_requests (id),
  stage       integer NOT NULL,
  approver_id uuid NOT NULL REFERENCES users (id),
  decision    text NOT NULL CHECK (decision IN ('approve', 'reject')),
  comment     text,
  accepted    boolean NOT NULL,
  refusal     text,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_request_decisions_request_idx ON access_request_decisions (request_id, id);
CREATE UNIQUE INDEX access_request_decisions_once_key ON access_request_decisions (request_id, stage, approver_id) WHERE accepted;

-- Manual fulfilment: a task for the fulfilment group to give the access (kind grant) and, when
-- time-bound access ends, to take it away again (kind revoke). Access counts as granted only once
-- the grant task is done.
CREATE TABLE access_tasks (
  id           uuid PRIMARY KEY,
  request_id   uuid NOT NULL REFERENCES access_requests (id),
  kind         text NOT NULL CHECK (kind IN ('grant', 'revoke')),
  group_id     uuid REFERENCES groups (id),
  assignee_ids uuid[] NOT NULL,
  instructions text,
  status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'claimed', 'done', 'failed')),
  claimed_by   uuid REFERENCES users (id),
  closed_by    uuid REFERENCES users (id),
  note         text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  claimed_at   timestamptz,
  closed_at    timestamptz,
  UNIQUE (request_id, kind)
);
CREATE INDEX access_tasks_open_idx ON access_tasks USING gin (assignee_ids) WHERE status IN ('open', 'claimed');

-- Notices sent about requests (one row per notice id), and the ones a channel kept refusing.
CREATE TABLE access_notifications (
  id          text PRIMARY KEY,
  request_id  uuid NOT NULL REFERENCES access_requests (id),
  type        text NOT NULL,
  recipients  uuid[] NOT NULL,
  status      text NOT NULL CHECK (status IN ('sent', 'failed')),
  attempts    integer NOT NULL,
  last_error  text,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_notifications_request_idx ON access_notifications (request_id);

-- Down Migration
DROP TABLE access_notifications;
DROP TABLE access_tasks;
DROP TABLE access_request_decisions;
DROP TABLE access_request_stages;
DROP TABLE access_requests;
DROP TABLE access_policies;
ALTER TABLE api_tokens DROP COLUMN user_id;
