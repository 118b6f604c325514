-- Up Migration

-- Invitations into a source's connection with entitlements. Only the SHA-256 of the invitation
-- token is kept; the token travels in the link sent to the invitee and comes back once, from the
-- post-login Action, to be redeemed.
CREATE TABLE invitations (
  id              uuid PRIMARY KEY,
  source_id       text NOT NULL REFERENCES sources (id),
  email           text NOT NULL,
  entitlement_ids uuid[] NOT NULL,
  token_hash      bytea NOT NULL,
  expires_at      timestamptz NOT NULL,
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'redeemed', 'revoked')),
  created_by      text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  -- The Auth0 user invited (created for the invitation when new_user).
  auth0_user_id   text,
  new_user        boolean,
  delivered_at    timestamptz,
  delivery_error  text,
  redeemed_at     timestamptz,
  user_id         uuid REFERENCES users (id),
  revoked_at      timestamptz,
  revoked_by      text,
  CHECK ((status = 'redeemed') = (redeemed_at IS NOT NULL)),
  CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE UNIQUE INDEX invitations_token_hash_key ON invitations (token_hash);
CREATE INDEX invitations_source_idx ON invitations (source_id, created_at DESC);
CREATE INDEX invitations_email_idx ON invitations (lower(email));

-- Down Migration
DROP TABLE invitations;
