-- linkbay-multitenant: roles. Generated; edit the config, not this file.
-- Roles are created only when missing; their RLS-relevant attributes are (re)asserted every time,
-- so a role that was given BYPASSRLS by hand is corrected. Passwords are left to you:
--   ALTER ROLE app_user PASSWORD '...';
-- Owns the tenant tables and runs migrations; FORCE ROW LEVEL SECURITY applies RLS to it too.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app_owner') THEN
    CREATE ROLE "app_owner" LOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
END
$$;
ALTER ROLE "app_owner" LOGIN NOSUPERUSER NOBYPASSRLS;

-- The application runtime role: RLS always applies to it.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app_user') THEN
    CREATE ROLE "app_user" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
  END IF;
END
$$;
ALTER ROLE "app_user" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;

-- Cross-tenant administration (export, import, move) through an explicit admin pool only.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app_admin') THEN
    CREATE ROLE "app_admin" LOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB;
  END IF;
END
$$;
ALTER ROLE "app_admin" LOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB;
