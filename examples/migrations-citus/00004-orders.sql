-- The example's own table, for Citus. Its distribution and RLS policy come from
-- `linkbay-multitenant generate` with "engine": "citus" (00005). bigserial rather than an identity
-- column: the foreign key to the registry (a reference table) makes this a Citus local table at
-- first, and Citus cannot distribute a Citus local table that has an identity column.
CREATE TABLE IF NOT EXISTS public.orders (
  tenant_id   uuid NOT NULL REFERENCES linkbay.tenants (id),
  id          bigserial,
  item        text NOT NULL CHECK (length(item) BETWEEN 1 AND 200),
  quantity    integer NOT NULL CHECK (quantity > 0),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
