-- linkbay-multitenant: the tenants registry. Rendered for the configured tenant id type by
-- `linkbay-multitenant generate`; the {{...}} placeholders are filled in there.
CREATE SCHEMA IF NOT EXISTS linkbay;

CREATE TABLE IF NOT EXISTS linkbay.tenants (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug         text NOT NULL CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  -- A custom domain (lower case, no port, no trailing dot), when the tenant has one.
  domain       text NULL CHECK (domain = lower(domain) AND domain !~ '[:/\s]' AND right(domain, 1) <> '.'),
  status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
  -- NULL: the tenant's rows live in the shared database under RLS. Otherwise the URL of the
  -- tenant's own database (TenantDBPool).
  database_url text NULL,
  plan         text NOT NULL DEFAULT 'default',
  metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS tenants_slug_key ON linkbay.tenants (slug);
CREATE UNIQUE INDEX IF NOT EXISTS tenants_domain_key ON linkbay.tenants (domain) WHERE domain IS NOT NULL;

CREATE OR REPLACE FUNCTION linkbay.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS tenants_touch_updated_at ON linkbay.tenants;
CREATE TRIGGER tenants_touch_updated_at BEFORE UPDATE ON linkbay.tenants
  FOR EACH ROW EXECUTE FUNCTION linkbay.touch_updated_at();

-- Cross-instance cache invalidation: every change to a tenant is announced on the channel
-- linkbay_tenants (delivered at COMMIT, to every session LISTENing on this database). The payload
-- names the tenant and its old and new slug and domain, so caches drop negative entries too.
CREATE OR REPLACE FUNCTION linkbay.notify_tenant_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
  payload jsonb;
BEGIN
  IF TG_OP = 'DELETE' THEN
    payload := jsonb_build_object('op', TG_OP, 'id', OLD.id::text, 'slugs', jsonb_build_array(OLD.slug), 'domains', jsonb_build_array(OLD.domain));
  ELSIF TG_OP = 'INSERT' THEN
    payload := jsonb_build_object('op', TG_OP, 'id', NEW.id::text, 'slugs', jsonb_build_array(NEW.slug), 'domains', jsonb_build_array(NEW.domain));
  ELSE
    payload := jsonb_build_object('op', TG_OP, 'id', NEW.id::text,
      'slugs', jsonb_build_array(OLD.slug, NEW.slug), 'domains', jsonb_build_array(OLD.domain, NEW.domain));
  END IF;
  PERFORM pg_notify('linkbay_tenants', payload::text);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS tenants_notify_change ON linkbay.tenants;
CREATE TRIGGER tenants_notify_change AFTER INSERT OR UPDATE OR DELETE ON linkbay.tenants
  FOR EACH ROW EXECUTE FUNCTION linkbay.notify_tenant_change();

-- Counters of tenantRateLimit's PostgreSQL store (rate-limiter-flexible's layout), shared by every
-- app instance. UNLOGGED: counters need no crash safety and should cost no WAL.
CREATE UNLOGGED TABLE IF NOT EXISTS linkbay.rate_limits (
  key varchar(255) PRIMARY KEY,
  points integer NOT NULL DEFAULT 0,
  expire bigint
);
ALTER TABLE linkbay.rate_limits OWNER TO "app_owner";
GRANT SELECT, INSERT, UPDATE, DELETE ON linkbay.rate_limits TO "app_user";

-- The registry is metadata, not tenant data: the app role reads it to resolve tenants, only the
-- admin role changes it.
ALTER SCHEMA linkbay OWNER TO "app_owner";
ALTER TABLE linkbay.tenants OWNER TO "app_owner";
GRANT USAGE ON SCHEMA linkbay TO "app_user", "app_admin";
GRANT SELECT ON linkbay.tenants TO "app_user";
GRANT SELECT, INSERT, UPDATE, DELETE ON linkbay.tenants TO "app_admin";

-- Plan classes of prepared statements (tenantQuery / withTenantTransaction, prepare 'tenant', the
-- default). The planner estimates a tenant's share of a table from the most-common-values list of
-- its tenant column: a tenant in that list gets its own estimate, every other tenant the same one.
-- This returns the tenants in those lists (for the RLS tables' columns named), so that a statement
-- is prepared once for all the other tenants (they would all be given the same plan) and once per
-- listed tenant, and no tenant runs a cached plan made for an estimate not its own.
-- pg_stats hides the statistics of tables under row level security from roles it applies to (the
-- values could reveal rows), so the function runs as the admin role (BYPASSRLS). It returns tenant
-- ids only, which the app role reads in linkbay.tenants anyway.
CREATE OR REPLACE FUNCTION linkbay.planner_tenants(columns text[]) RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT DISTINCT v.value
    FROM pg_catalog.pg_stats s
    JOIN pg_catalog.pg_namespace n ON n.nspname = s.schemaname
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
    CROSS JOIN LATERAL unnest(s.most_common_vals::text::text[]) AS v(value)
   WHERE s.attname = ANY (columns) AND c.relrowsecurity
$$;
-- A new owner needs CREATE on the schema at the moment of the change only.
GRANT CREATE ON SCHEMA linkbay TO "app_admin";
ALTER FUNCTION linkbay.planner_tenants(text[]) OWNER TO "app_admin";
REVOKE CREATE ON SCHEMA linkbay FROM "app_admin";
REVOKE ALL ON FUNCTION linkbay.planner_tenants(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION linkbay.planner_tenants(text[]) TO "app_user";
