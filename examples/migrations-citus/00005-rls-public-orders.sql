-- linkbay-multitenant: Citus row level security for public.orders (distributed by tenant_id, uuid).
-- Generated; edit the config, not this file. Idempotent.
ALTER TABLE "public"."orders" OWNER TO "app_owner";
GRANT USAGE ON SCHEMA "public" TO "app_user", "app_admin";
GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."orders" TO "app_user", "app_admin";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "public" TO "app_user", "app_admin";

-- Distributed by the tenant column: each tenant's rows on one shard, colocated with the first
-- tenant table so that joins on the tenant column run on one node.
DO $$
BEGIN
  -- A table with a foreign key to a reference table may already be a Citus local table (partmethod
  -- 'n'): distributing it is what is wanted. Already hash-distributed: nothing to do.
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = '"public"."orders"'::regclass AND partmethod = 'h') THEN
    PERFORM create_distributed_table('"public"."orders"', 'tenant_id', colocate_with => 'default');
  END IF;
END
$$;

ALTER TABLE "public"."orders" ENABLE ROW LEVEL SECURITY;
ALTER TABLE "public"."orders" FORCE ROW LEVEL SECURITY;

-- ONE permissive policy: Citus drops AS RESTRICTIVE on the shards, where a second permissive
-- policy would be OR-ed with this one. NULLIF: no tenant set matches no row. WITH CHECK refuses
-- writes of another tenant's rows, on the shard.
DROP POLICY IF EXISTS lbmt_tenant_access ON "public"."orders";
DROP POLICY IF EXISTS lbmt_tenant_isolation ON "public"."orders";
CREATE POLICY lbmt_tenant_isolation ON "public"."orders" AS PERMISSIVE FOR ALL TO PUBLIC
  USING ("tenant_id" = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
  WITH CHECK ("tenant_id" = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

-- An index led by the tenant column, unless one exists (a shard holds many tenants).
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
