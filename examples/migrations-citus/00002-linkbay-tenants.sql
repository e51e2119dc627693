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
-- default; src/plan-classes.ts). The planner estimates a tenant's share of a table from the
-- most-common-values list of its tenant column: a listed tenant with its own frequency, every other
-- tenant with one and the same frequency. This returns, for each relation under the library's
-- isolation policy (and each of its partitions), the tenants in that list with their frequency, and
-- one row with a NULL tenant: the frequency the planner uses for every other tenant. Tenants whose
-- estimates are alike then share a prepared statement (and its cached plans); the others do not.
--
-- pg_stats hides the statistics of tables under row level security from the roles it applies to,
-- so the function runs as the admin role (BYPASSRLS). It reads only the columns the isolation
-- policies reference (the tenant column) and returns tenant ids and frequencies, nothing of any
-- other column. search_path is pinned, pg_temp last, and every name is qualified.
DO $plan_classes$
BEGIN
  -- Owning the function as the admin role needs membership in it (a superuser has it). When the
  -- migration runs as a role without it, the function is not created or changed: the library then
  -- plans statements at each execution, which needs no statistics.
  -- From PostgreSQL 16 a membership may be granted without SET: ALTER ... OWNER needs SET.
  IF NOT pg_catalog.pg_has_role(current_user, 'app_admin',
         CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) THEN
    RAISE NOTICE 'linkbay.planner_tenants() not created: % cannot act as %', current_user, 'app_admin';
    RETURN;
  END IF;
  DROP FUNCTION IF EXISTS linkbay.planner_tenants(text[]);
  CREATE OR REPLACE FUNCTION linkbay.planner_tenants()
  RETURNS TABLE (relation text, tenant text, frequency double precision)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
    WITH policed AS (
      SELECT DISTINCT p.polrelid AS relid, a.attname
        FROM pg_catalog.pg_policy p
        JOIN pg_catalog.pg_depend d
          ON d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid = p.oid
         AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = p.polrelid AND d.refobjsubid > 0
        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
       WHERE p.polname = 'lbmt_tenant_isolation'
    ), isolated AS (
      -- The table, and its partitions (scanned with their own statistics).
      SELECT relid, attname FROM policed
      UNION
      SELECT t.relid, p.attname FROM policed p CROSS JOIN LATERAL pg_catalog.pg_partition_tree(p.relid) AS t
    ), stats AS (
      SELECT i.relid, s.most_common_vals::pg_catalog.text::pg_catalog.text[] AS vals,
             s.most_common_freqs AS freqs, s.null_frac,
             CASE WHEN s.n_distinct >= 0 THEN s.n_distinct ELSE -s.n_distinct * GREATEST(c.reltuples, 0) END AS ndistinct
        FROM isolated i
        JOIN pg_catalog.pg_class c ON c.oid = i.relid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        -- A partitioned table's statistics cover its partitions (inherited); a plain table's do not.
        JOIN pg_catalog.pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = i.attname
         AND s.inherited = (c.relkind = 'p')
    )
    SELECT st.relid::pg_catalog.text, m.value, m.freq::double precision
      FROM stats st CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(st.vals), pg_catalog.unnest(st.freqs)) AS m(value, freq)
    UNION ALL
    -- What var_eq_const estimates for a value outside the list: the rest of the rows over the rest
    -- of the distinct values, at most the least common listed frequency.
    SELECT st.relid::pg_catalog.text, NULL,
           LEAST(
             (1 - COALESCE((SELECT pg_catalog.sum(f) FROM pg_catalog.unnest(st.freqs) AS f), 0) - st.null_frac)
               / GREATEST(st.ndistinct - COALESCE(pg_catalog.cardinality(st.freqs), 0), 1),
             COALESCE((SELECT pg_catalog.min(f) FROM pg_catalog.unnest(st.freqs) AS f), 1))::double precision
      FROM stats st
  $body$;
  -- A new owner needs CREATE on the schema at the moment of the change (given only if missing).
  IF NOT pg_catalog.has_schema_privilege('app_admin', 'linkbay', 'CREATE') THEN
    GRANT CREATE ON SCHEMA linkbay TO "app_admin";
    ALTER FUNCTION linkbay.planner_tenants() OWNER TO "app_admin";
    REVOKE CREATE ON SCHEMA linkbay FROM "app_admin";
  ELSE
    ALTER FUNCTION linkbay.planner_tenants() OWNER TO "app_admin";
  END IF;
  REVOKE ALL ON FUNCTION linkbay.planner_tenants() FROM PUBLIC;
  GRANT EXECUTE ON FUNCTION linkbay.planner_tenants() TO "app_user";
END
$plan_classes$;
