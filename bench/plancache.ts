/**
 * Does `prepare: 'all'` hand one tenant a plan made for another? (The default, 'tenant', does not name
 * the caller's statement, so it is planned for each execution.)
 *
 * tenantQuery with prepare true sends named prepared statements. PostgreSQL plans a named statement
 * with a custom plan for its first 5 executions and may then switch to a cached generic plan; a
 * statement WITHOUT parameters (`SELECT count(*) FROM orders`, the tenant coming from RLS) is given
 * the generic plan from its first execution (plancache.c, choose_custom_plan: "never any point in a
 * custom plan if there's no parameters"). Under the bare policy the planner estimates with the tenant
 * set at planning time, so the cached plan was made for whichever tenant ran first on that connection.
 *
 * Each scenario uses a fresh pool of one connection: the statement is executed 6 times for the
 * tenant that primes the plan, then timed for the other tenant; the plan actually used is shown by
 * EXPLAIN EXECUTE of the same named statement on the same connection. Reference: the same statement
 * with prepare false (planned for each execution) for the same tenant.
 *
 * A second series runs the bare form on connections opened with `plan_cache_mode=force_custom_plan`
 * (a setting users can apply today, per role or in the pool's `options`): it covers statements with
 * parameters, not those without (choose_custom_plan returns before reading the setting).
 */
import { tenantQuery } from '../src/transaction.js';
import { preparedStatementName } from '../src/pipeline.js';
import { median } from './stats.js';
import { asTenant, planShape, skewQuery, type QueryKind, type Variant } from './skew.js';
import type { BenchEnv } from './setup.js';

/** Server setting the connections of a scenario run with (the pool's `options`), or none. */
export type PlanCacheMode = 'default' | 'plan_cache_mode=force_custom_plan';

export interface PlanCacheRow {
  readonly statement: string;
  readonly mode: PlanCacheMode;
  readonly variant: Variant;
  readonly primedBy: 'small' | 'big';
  readonly measured: 'small' | 'big';
  /** Median ms, prepare true (the cached plan) and prepare false (planned for this tenant). */
  readonly preparedMs: number;
  readonly unpreparedMs: number;
  readonly ratio: number;
  readonly preparedPlan: string;
  readonly unpreparedPlan: string;
  /** Full EXPLAIN (ANALYZE) of the named statement as the measured tenant ran it. */
  readonly preparedExplain: readonly string[];
  readonly genericPlans: number;
  readonly customPlans: number;
}

type Statement = { label: string; kind: QueryKind; withParam: boolean };

const STATEMENTS: readonly Statement[] = [
  { label: 'count', kind: 'count', withParam: false },
  { label: 'first page', kind: 'first page', withParam: false },
  { label: 'deep page', kind: 'deep page', withParam: false },
  // A parameter makes PostgreSQL plan the first 5 executions for their values, then compare.
  { label: 'deep page, WHERE created_at <= $1', kind: 'deep page', withParam: true },
];

function statementText(statement: Statement, variant: Variant): string {
  const { text } = skewQuery(statement.kind, variant, '');
  return statement.withParam ? text.replace(' ORDER BY', ' WHERE created_at <= $1 ORDER BY') : text;
}

export async function runPlanCache(env: BenchEnv, timedRuns: number): Promise<PlanCacheRow[]> {
  const out: PlanCacheRow[] = [];
  const tenants = { small: env.smallTenant, big: env.bigTenant } as const;
  const param = ['2100-01-01T00:00:00Z'];
  const scenarios: Array<[Variant, PlanCacheMode]> = [
    ['RLS bare', 'default'],
    ['RLS bare', 'plan_cache_mode=force_custom_plan'],
    ['RLS initplan', 'default'],
  ];
  for (const [variant, mode] of scenarios) {
    for (const statement of STATEMENTS) {
      for (const [primedBy, measured] of [['small', 'big'], ['big', 'small']] as const) {
        if (statement.kind === 'deep page' && measured === 'small') continue; // a small tenant has no page 200
        const text = statementText(statement, variant);
        const values = statement.withParam ? param : [];
        const pool = env.db.pool(env.db.appUrl, { max: 1, ...(mode === 'default' ? {} : { options: `-c ${mode}` }) });
        try {
          for (let i = 0; i < 6; i += 1) await tenantQuery(pool, tenants[primedBy], text, values, { prepare: 'all' });
          // Alternating, after one untimed run each: the two see the same caches and noise.
          const times = { true: [] as number[], false: [] as number[] };
          for (let i = -1; i < timedRuns; i += 1) {
            // 'all': the caller's statement is named (the cached plan); 'tenant', the default: unnamed, planned for this tenant.
            for (const prepare of ['all', 'tenant'] as const) {
              const started = performance.now();
              await tenantQuery(pool, tenants[measured], text, values, { prepare });
              if (i >= 0) times[prepare === 'all' ? 'true' : 'false'].push(performance.now() - started);
            }
          }
          const preparedMs = median(times.true);
          const unpreparedMs = median(times.false);
          const client = await pool.connect();
          try {
            const name = preparedStatementName(text);
            const args = statement.withParam ? `('${param[0]}')` : '';
            const { preparedPlan, unpreparedPlan } = await asTenant(client, tenants[measured], async () => ({
              preparedPlan: (await client.query(`EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) EXECUTE ${name}${args}`)).rows.map(
                (r) => r['QUERY PLAN'] as string,
              ),
              unpreparedPlan: (await client.query(`EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) ${text}`, values)).rows.map(
                (r) => r['QUERY PLAN'] as string,
              ),
            }));
            const { rows } = await client.query<{ generic_plans: string; custom_plans: string }>(
              'SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = $1',
              [name],
            );
            out.push({
              statement: statement.label,
              mode,
              variant,
              primedBy,
              measured,
              preparedMs,
              unpreparedMs,
              ratio: preparedMs / unpreparedMs,
              preparedPlan: planShape(preparedPlan),
              preparedExplain: preparedPlan,
              unpreparedPlan: planShape(unpreparedPlan),
              genericPlans: Number(rows[0]?.generic_plans ?? Number.NaN),
              customPlans: Number(rows[0]?.custom_plans ?? Number.NaN),
            });
          } finally {
            client.release();
          }
        } finally {
          await pool.end();
        }
      }
    }
  }
  return out;
}
