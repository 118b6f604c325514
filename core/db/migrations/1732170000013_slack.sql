-- Up Migration

-- Signed Slack callbacks already accepted (by signature, and by event id for the Events API), kept
-- until their timestamp falls out of the 5-minute window: a replayed callback is refused.
CREATE TABLE slack_seen_requests (
  key        text PRIMARY KEY,
  expires_at timestamptz NOT NULL
);
CREATE INDEX slack_seen_requests_expiry_idx ON slack_seen_requests (expires_at);

-- Who is who: a Slack user and the directory user with the same verified email (NULL: none, with
-- why), remembered until `expires_at` so users.info is not asked on every click.
CREATE TABLE slack_identities (
  slack_user_id text PRIMARY KEY,
  user_id       uuid REFERENCES users (id) ON DELETE CASCADE,
  email         text,
  unmapped_reason text,
  checked_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL
);
CREATE INDEX slack_identities_user_idx ON slack_identities (user_id);

-- Every message the app posted about a request, keyed by what it is for (the approval DM of one
-- approver at one stage, the request's thread, one update in it, a task), so a retried activity
-- never posts twice and later changes can update the message (chat.update) or answer in its thread.
CREATE TABLE slack_messages (
  key         text PRIMARY KEY,
  request_id  uuid REFERENCES access_requests (id),
  kind        text NOT NULL,
  recipient_id uuid REFERENCES users (id),
  stage       integer,
  channel     text NOT NULL,
  ts          text NOT NULL,
  -- What the message last showed (e.g. 'open', 'closed'), so an update is made once.
  shown       text NOT NULL DEFAULT 'open',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slack_messages_request_idx ON slack_messages (request_id, kind);

-- Down Migration
DROP TABLE slack_messages;
DROP TABLE slack_identities;
DROP TABLE slack_seen_requests;
