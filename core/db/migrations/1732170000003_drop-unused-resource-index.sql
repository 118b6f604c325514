-- Up Migration

-- Filters are translated to expressions on resource paths and on indexed columns, never to jsonb
-- containment, so this index only slowed every user write down.
DROP INDEX users_resource_gin;

-- Down Migration
CREATE INDEX users_resource_gin ON users USING gin (resource jsonb_path_ops);
