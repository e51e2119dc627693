-- linkbay-multitenant: row level security for public.orders (tenant column tenant_id, uuid).
-- Generated; edit the config, not this file. Idempotent.
ALTER TABLE "public"."orders" OWNER TO "app_owner";
GRANT USAGE ON SCHEMA "public" TO "app_user", "app_admin";
GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."orders" TO "app_user", "app_admin";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "public" TO "app_user", "app_admin";

-- FORCE: without it the table owner bypasses every policy.
ALTER TABLE "public"."orders" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "public"."orders" FORCE ROW LEVEL SECURITY;

-- Isolation is RESTRICTIVE: it is AND-ed with every permissive policy, so a later
-- "USING (true)" policy cannot widen access. NULLIF makes "no tenant set" (NULL or '') match no row
-- instead of failing a cast. WITH CHECK refuses writes of another tenant's rows.
DROP POLICY IF EXISTS lbmt_tenant_isolation ON "public"."orders";
CREATE POLICY lbmt_tenant_isolation ON "public"."orders" AS RESTRICTIVE FOR ALL TO PUBLIC
  USING ("tenant_id" = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK ("tenant_id" = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

-- At least one permissive policy must pass for any row to be visible; this one lets the app and
-- owner roles work, within the restrictive policy above.
DROP POLICY IF EXISTS lbmt_tenant_access ON "public"."orders";
CREATE POLICY lbmt_tenant_access ON "public"."orders" AS PERMISSIVE FOR ALL TO "app_user", "app_owner"
  USING (true)
  WITH CHECK (true);

-- Partitions do not inherit the parent's policies, and a query naming a partition directly skips
-- the parent's: the same protection on every existing partition (partitions attached later need
-- this file re-run, or a new migration; `doctor` reports unprotected ones).
DO $$
DECLARE
  part regclass;
BEGIN
  FOR part IN SELECT relid FROM pg_catalog.pg_partition_tree('"public"."orders"'::regclass) WHERE level > 0 LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO %I', part, 'app_owner');
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I, %I', part, 'app_user', 'app_admin');
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', part);
    EXECUTE format('DROP POLICY IF EXISTS lbmt_tenant_isolation ON %s', part);
    EXECUTE format('CREATE POLICY lbmt_tenant_isolation ON %s AS RESTRICTIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)', part, $p$"tenant_id" = NULLIF(current_setting('app.tenant_id', true), '')::uuid$p$, $p$"tenant_id" = NULLIF(current_setting('app.tenant_id', true), '')::uuid$p$);
    EXECUTE format('DROP POLICY IF EXISTS lbmt_tenant_access ON %s', part);
    EXECUTE format('CREATE POLICY lbmt_tenant_access ON %s AS PERMISSIVE FOR ALL TO %I, %I USING (true) WITH CHECK (true)', part, 'app_user', 'app_owner');
  END LOOP;
END
$$;

-- An index led by the tenant column, unless one exists: the policy is an index condition.
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = '"public"."orders"'::regclass AND a.attname = 'tenant_id'
  ) THEN
    CREATE INDEX "orders_tenant_id_lbmt_idx" ON "public"."orders" ("tenant_id");
  END IF;
END
$$;
