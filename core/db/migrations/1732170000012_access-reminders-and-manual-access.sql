-- Up Migration

-- How long before time-bound access ends its requester is told (NULL: not told).
ALTER TABLE access_policies ADD COLUMN expiring_notice_s integer CHECK (expiring_notice_s > 0);

-- When fulfilled time-bound access given by hand ends (an extension moves it on; NULL: automatic
-- fulfilment, whose end is its grant's validity window, or access without an end).
ALTER TABLE access_requests ADD COLUMN access_until timestamptz;

-- Down Migration
ALTER TABLE access_requests DROP COLUMN access_until;
ALTER TABLE access_policies DROP COLUMN expiring_notice_s;
