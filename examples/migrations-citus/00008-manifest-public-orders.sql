-- linkbay-multitenant: records public.orders's RLS flags, policies and grants as migrated, for
-- doctor's drift check (LBMT_DRIFT_*). Generated; edit the config, not this file. Idempotent.
DO $$
BEGIN
  IF pg_catalog.to_regprocedure('linkbay.record_table_state(regclass)') IS NULL THEN
    RAISE NOTICE 'linkbay.record_table_state(regclass) is missing: % not recorded (apply the library''s migrations first)', '"public"."orders"';
    RETURN;
  END IF;
  PERFORM linkbay.record_table_state('"public"."orders"'::regclass);
END
$$;
