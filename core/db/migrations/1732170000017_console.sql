-- Up Migration

-- Web console sessions. The cookie carries a random session id (signed); only its SHA-256 is kept
-- here, so a copy of this table does not sign anyone in. Signing out deletes the row, so a copied
-- cookie is worthless afterwards too.
CREATE TABLE console_sessions (
  id_hash    bytea PRIMARY KEY,
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  -- The CSRF token every state-changing form of this session carries.
  csrf       text NOT NULL,
  -- How the person signed in: 'oidc' or 'local' (npm start only).
  via        text NOT NULL CHECK (via IN ('oidc', 'local')),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

-- Down Migration
DROP TABLE console_sessions;
