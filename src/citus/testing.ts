/**
 * The Citus parts of assertTenantIsolation (src/testing/index.ts, src/testing/probes.ts):
 * - Citus refuses some of the probes' statements outright on tables under RLS, with SQLSTATE 0A000:
 *   INSERT ... SELECT ("COPY FROM not supported with row-level security"), an UPDATE of the
 *   distribution column ("modifying the partition value of rows is not allowed"), and cursors with
 *   WHERE CURRENT OF. Nothing was written: those are refusals, not breaches.
 * - "The tenant setting is ''" has to be a SET LOCAL on Citus to reach the shards (set_config does not).
 */
import { quoteLiteral, type TenancyConfig } from '../config.js';

const CITUS_REFUSALS = [
  /COPY FROM not supported with row-level security/i,
  /modifying the partition value of rows is not allowed/i,
  /WHERE CURRENT OF/i,
  /cursors? .*(not supported|cannot)/i,
];

/** A Citus refusal of the statement itself (0A000, one of the messages above): nothing ran. */
export function citusRefused(outcome: { sqlState: string; message: string } | object): boolean {
  if (!('sqlState' in outcome) || outcome.sqlState !== '0A000') return false;
  const message = (outcome as { message: string }).message;
  return CITUS_REFUSALS.some((pattern) => pattern.test(message));
}

/** The statement that sets the tenant setting to `value` inside an open transaction, for the engine. */
export function tenantSettingStatement(config: TenancyConfig, value: string): { text: string; values: string[] } {
  if (config.engine === 'citus') return { text: `SET LOCAL ${config.setting} = ${quoteLiteral(value)}`, values: [] };
  return { text: 'SELECT set_config($1, $2, true)', values: [config.setting, value] };
}
