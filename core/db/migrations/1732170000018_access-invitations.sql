-- Up Migration

-- A policy may invite people who are not in the directory yet: the Auth0 source it invites into,
-- who may sponsor an invitation, and how long the link stays valid. NULL: the policy does not invite.
ALTER TABLE access_policies ADD COLUMN invitation jsonb;

-- An invitation request: made by a sponsor (the requester) for an email address. Once approved,
-- the request's invitation is recorded in invitation_id and the request is `invited` until the
-- invitation is redeemed (fulfilled), revoked (revoked) or expires (expired).
ALTER TABLE access_requests ADD COLUMN invitee_email text;
ALTER TABLE access_requests ADD COLUMN invitee_name text;
ALTER TABLE access_requests ADD COLUMN invitation_id uuid REFERENCES invitations (id);
ALTER TABLE access_requests DROP CONSTRAINT access_requests_status_check;
ALTER TABLE access_requests ADD CONSTRAINT access_requests_status_check
  CHECK (status IN ('pending', 'approved', 'invited', 'rejected', 'cancelled', 'expired', 'fulfilled', 'failed', 'revoked'));
-- One pending request per person and policy; a sponsor may ask for several invitees, but each
-- email has at most one open invitation request per policy.
DROP INDEX access_requests_one_pending_key;
CREATE UNIQUE INDEX access_requests_one_pending_key ON access_requests (policy_id, requester_id) WHERE status = 'pending' AND invitee_email IS NULL;
CREATE UNIQUE INDEX access_requests_one_open_invitation_key ON access_requests (policy_id, lower(invitee_email))
  WHERE status IN ('pending', 'approved', 'invited') AND invitee_email IS NOT NULL;

-- An invitation made for an access request: the request's id is its idempotency key (one
-- invitation per request, however often the activity runs). `delivery_token` holds the link's
-- token only until the link is delivered, so a retried delivery sends the same link; it is NULL
-- once delivered (and for invitations made through the admin API, which are not retried).
-- `grant_duration_s`: the grants made at redemption last this long (NULL: no end).
ALTER TABLE invitations ADD COLUMN request_id uuid UNIQUE REFERENCES access_requests (id);
ALTER TABLE invitations ADD COLUMN delivery_token text;
ALTER TABLE invitations ADD COLUMN grant_duration_s integer CHECK (grant_duration_s > 0);

-- Down Migration
ALTER TABLE invitations DROP COLUMN grant_duration_s;
ALTER TABLE invitations DROP COLUMN delivery_token;
ALTER TABLE invitations DROP COLUMN request_id;
DROP INDEX access_requests_one_open_invitation_key;
DROP INDEX access_requests_one_pending_key;
CREATE UNIQUE INDEX access_requests_one_pending_key ON access_requests (policy_id, requester_id) WHERE status = 'pending';
ALTER TABLE access_requests DROP CONSTRAINT access_requests_status_check;
ALTER TABLE access_requests ADD CONSTRAINT access_requests_status_check
  CHECK (status IN ('pending', 'approved', 'rejected', 'cancelled', 'expired', 'fulfilled', 'failed', 'revoked'));
ALTER TABLE access_requests DROP COLUMN invitation_id;
ALTER TABLE access_requests DROP COLUMN invitee_name;
ALTER TABLE access_requests DROP COLUMN invitee_email;
ALTER TABLE access_policies DROP COLUMN invitation;
