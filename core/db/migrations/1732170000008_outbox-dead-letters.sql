-- Up Migration

-- An outbox row that Temporal refused OUTBOX_MAX_ATTEMPTS times is parked instead of being retried
-- forever: `dead_lettered_at` and its reason are set, the dispatcher no longer claims it, and the
-- admin API lists and re-drives it (gateway/routes/api/outbox.ts). `attempts` counts every try
-- (it sets the backoff); `refusals` counts only the tries Temporal answered with an error, so an
-- outage, however long, parks nothing.
ALTER TABLE outbox ADD COLUMN refusals integer NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN dead_lettered_at timestamptz;
ALTER TABLE outbox ADD COLUMN dead_letter_reason text;
ALTER TABLE outbox ADD CHECK ((dead_lettered_at IS NULL) = (dead_letter_reason IS NULL));

DROP INDEX outbox_pending_idx;
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE delivered_at IS NULL AND dead_lettered_at IS NULL;
CREATE INDEX outbox_dead_letter_idx ON outbox (id) WHERE dead_lettered_at IS NOT NULL;

-- Down Migration

DROP INDEX outbox_dead_letter_idx;
DROP INDEX outbox_pending_idx;
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE delivered_at IS NULL;
ALTER TABLE outbox DROP COLUMN dead_letter_reason;
ALTER TABLE outbox DROP COLUMN dead_lettered_at;
ALTER TABLE outbox DROP COLUMN refusals;
