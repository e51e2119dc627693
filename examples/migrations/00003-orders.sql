-- The example's own table. Its RLS policies come from `linkbay-multitenant generate`.
CREATE TABLE IF NOT EXISTS public.orders (
  tenant_id   uuid NOT NULL REFERENCES linkbay.tenants (id),
  id          bigint GENERATED ALWAYS AS IDENTITY,
  item        text NOT NULL CHECK (length(item) BETWEEN 1 AND 200),
  quantity    integer NOT NULL CHECK (quantity > 0),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
