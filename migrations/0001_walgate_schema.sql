-- The schema that holds walgate's own tables. Changes to tables in this schema never become
-- change events.
CREATE SCHEMA IF NOT EXISTS walgate;
COMMENT ON SCHEMA walgate IS 'Tables owned by the walgate gateway';
