-- Runs once when the postgres container initialises its data directory. The generated migration
-- 00001-roles.sql creates the same roles when missing and asserts their attributes; creating them
-- here too lets PgBouncer authenticate app_user before the app's first migration.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_owner') THEN
    CREATE ROLE app_owner LOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_user') THEN
    CREATE ROLE app_user LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB PASSWORD 'app_user_password';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_admin') THEN
    CREATE ROLE app_admin LOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB;
  END IF;
END
$$;
