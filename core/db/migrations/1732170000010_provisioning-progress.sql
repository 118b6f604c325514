-- Up Migration

-- The target's own name for each account a reconciliation reads, so drift can name an account no
-- user of ours owns (an orphan) instead of showing only the target's id for it.
ALTER TABLE reconcile_seen ADD COLUMN user_name text;
ALTER TABLE drift ADD COLUMN remote_user_name text;

-- Down Migration
ALTER TABLE drift DROP COLUMN remote_user_name;
ALTER TABLE reconcile_seen DROP COLUMN user_name;
