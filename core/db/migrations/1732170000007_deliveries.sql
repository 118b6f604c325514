-- Up Migration

-- One-time download links for files a connector hands to a user (core/delivery/). The content is
-- kept only as AES-256-GCM ciphertext under a key derived from the link's token; the token itself is
-- never stored, only its SHA-256, so the database alone cannot open or serve a delivery. The
-- ciphertext is wiped (set to NULL) when the link is downloaded, superseded, withdrawn or expires;
-- the row stays for the admin listing and is deleted by the sweep some time after it expires.
CREATE TABLE deliveries (
  id            uuid PRIMARY KEY,
  token_hash    bytea NOT NULL,
  user_id       uuid NOT NULL REFERENCES users (id),
  -- A removed connector takes its pending links with it.
  connector_id  text NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
  filename      text NOT NULL,
  content_type  text NOT NULL,
  ciphertext    bytea,
  nonce         bytea,
  auth_tag      bytea,
  size          integer NOT NULL CHECK (size >= 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  downloaded_at timestamptz,
  -- Set when the link stopped working before download: a newer link for the same file replaced it
  -- (superseded) or the user could not be told about it (undelivered).
  revoked_at    timestamptz,
  revoked_reason text CHECK (revoked_reason IN ('superseded', 'undelivered')),
  CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL)),
  -- Content exists only while the link can still be used.
  CHECK (ciphertext IS NULL OR (downloaded_at IS NULL AND revoked_at IS NULL))
);
CREATE UNIQUE INDEX deliveries_token_hash_key ON deliveries (token_hash);
CREATE INDEX deliveries_user_idx ON deliveries (user_id, created_at DESC);
-- Links still holding content, for superseding and for the sweep.
CREATE INDEX deliveries_live_idx ON deliveries (user_id, connector_id, filename) WHERE ciphertext IS NOT NULL;
CREATE INDEX deliveries_expires_idx ON deliveries (expires_at);

-- Down Migration
DROP TABLE deliveries;
