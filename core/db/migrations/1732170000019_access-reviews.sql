-- Up Migration

-- Scheduled access reviews: a named review repeated on a Temporal Schedule. `spec` holds the
-- campaign settings as the API validated them (users, groups and entitlements resolved to ids);
-- each firing opens a campaign with a copy of it.
CREATE TABLE review_schedules (
  name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  spec        jsonb NOT NULL,
  schedule    jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One certification campaign. `spec` is the campaign as it was opened, so editing a schedule
-- never changes a running campaign. `workflow_id` is its `certification` workflow (unique: a
-- scheduled firing that runs twice opens one campaign).
CREATE TABLE review_campaigns (
  id             uuid PRIMARY KEY,
  name           text NOT NULL,
  schedule_name  text REFERENCES review_schedules (name) ON DELETE SET NULL,
  spec           jsonb NOT NULL,
  status         text NOT NULL DEFAULT 'generating' CHECK (status IN ('generating', 'open', 'escalated', 'closed')),
  starts_at      timestamptz NOT NULL,
  due_at         timestamptz NOT NULL,
  escalated_until timestamptz,
  workflow_id    text NOT NULL UNIQUE,
  created_by     text NOT NULL,
  generated_at   timestamptz,
  closed_at      timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX review_campaigns_created_idx ON review_campaigns (created_at DESC);

-- One item per user × entitlement in scope. `reasons` lists why the user holds it (grant reasons
-- `rule:<name>`, `manual`, `request:<id>`, `invitation:<id>`, or `reconcile` for a membership found
-- in the target that nobody granted); `grant_ids` the grants behind it. A birthright item (a rule
-- gives it) can be kept or flagged, but only changing the rule takes it away.
CREATE TABLE review_items (
  id             uuid PRIMARY KEY,
  campaign_id    uuid NOT NULL REFERENCES review_campaigns (id),
  user_id        uuid NOT NULL REFERENCES users (id),
  entitlement_id uuid NOT NULL REFERENCES entitlements (id),
  reasons        text[] NOT NULL,
  grant_ids      uuid[] NOT NULL DEFAULT '{}',
  birthright     boolean NOT NULL DEFAULT false,
  -- Found in the target by reconciliation (no grant), not recorded as applied yet.
  found_unrecorded boolean NOT NULL DEFAULT false,
  reviewer_ids   uuid[],
  reviewer_note  text,
  status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'kept', 'revoked')),
  decision       text CHECK (decision IN ('keep', 'revoke')),
  decided_by     uuid REFERENCES users (id),
  decided_actor  text,
  comment        text,
  decided_at     timestamptz,
  outcome        text,
  escalated      boolean NOT NULL DEFAULT false,
  UNIQUE (campaign_id, user_id, entitlement_id)
);
CREATE INDEX review_items_reviewer_idx ON review_items USING gin (reviewer_ids) WHERE status = 'pending';
CREATE INDEX review_items_campaign_status_idx ON review_items (campaign_id, status);

-- Every decision on an item and every refused attempt at one (with why it was refused).
CREATE TABLE review_decisions (
  id          bigserial PRIMARY KEY,
  item_id     uuid NOT NULL REFERENCES review_items (id),
  reviewer_id uuid REFERENCES users (id),
  actor       text NOT NULL,
  decision    text NOT NULL CHECK (decision IN ('keep', 'revoke')),
  comment     text,
  accepted    boolean NOT NULL,
  refusal     text,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX review_decisions_item_idx ON review_decisions (item_id, id);
CREATE UNIQUE INDEX review_decisions_once_key ON review_decisions (item_id) WHERE accepted;

-- Notices sent to reviewers (one row per notice id).
CREATE TABLE review_notifications (
  id          text PRIMARY KEY,
  campaign_id uuid NOT NULL REFERENCES review_campaigns (id),
  type        text NOT NULL,
  recipients  uuid[] NOT NULL,
  status      text NOT NULL CHECK (status IN ('sent', 'failed')),
  attempts    integer NOT NULL,
  last_error  text,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX review_notifications_campaign_idx ON review_notifications (campaign_id);

-- Down Migration
DROP TABLE review_notifications;
DROP TABLE review_decisions;
DROP TABLE review_items;
DROP TABLE review_campaigns;
DROP TABLE review_schedules;
