/**
 * Does a prepare mode hand one tenant a plan made for another? Measured for the three modes:
 *
 * - 'all' sends the caller's statement as a named prepared statement. PostgreSQL plans a named
 *   statement with a custom plan for its first 5 executions and may then switch to a cached generic
 *   plan; a statement WITHOUT parameters (`SELECT count(*) FROM orders`, the tenant coming from RLS)
 *   is given the generic plan from its first execution (plancache.c, choose_custom_plan: "never any
 *   point in a custom plan if there's no parameters"). Under the bare policy the planner estimates
 *   with the tenant set at planning time, so the cached plan was made for whichever tenant ran first
 *   on that connection.
 * - 'tenant' (the default) names the statement per plan class (src/plan-classes.ts): the power of
 *   two of the tenant's estimated share of the table, from the tenant column's most-common-values
 *   list (every unlisted tenant has the same estimate). The big tenant is a class of its own.
 * - 'none' names nothing: the reference, a plan made for this tenant at each execution.
 *
 * Each scenario uses a fresh pool of one connection: the statement is executed 6 times with
 * 'all' and 6 times with 'tenant' for the tenant that primes the plan, then timed for the other
 * tenant in each mode (alternating, rotated). The plan each mode used is EXPLAINed on the same
 * connection the way that mode runs it (EXECUTE of the named statement: 'all''s, or the measured
 * tenant's class's for 'tenant'; the statement itself for 'none'), and pg_prepared_statements'
 * generic_plans / custom_plans counters are read around every timed execution, so each mode's count
 * of generic and custom plans is measured, not inferred.
 *
 * A second series runs the bare form on connections opened with `plan_cache_mode=force_custom_plan`
 * (a setting users can apply per role or in the pool's `options`): it covers statements with
 * parameters, not those without (choose_custom_plan returns before reading the setting).
 */
import type pg from 'pg';
import { tenantQuery } from '../src/transaction.js';
import { preparedStatementName, type PrepareMode } from '../src/pipeline.js';
import { classOf } from '../src/plan-classes.js';
import { median, rotate } from './stats.js';
import { asTenant, planShape, skewQuery, type QueryKind, type Variant } from './skew.js';
import type { BenchEnv } from './setup.js';

/** Server setting the connections of a scenario run with (the pool's `options`), or none. */
export type PlanCacheMode = 'default' | 'plan_cache_mode=force_custom_plan';

export const MODES = ['all', 'tenant', 'none'] as const satisfies readonly PrepareMode[];
export type Mode = (typeof MODES)[number];

export interface ModeMeasure {
  /** Median ms of the timed executions for the measured tenant. */
  readonly ms: number;
  /** Median over executions of (this mode's time / 'none''s time of the same iteration). */
  readonly ratioToNone: number;
  /** The plan this mode ran, as EXPLAIN (ANALYZE) shows it, and its shape. */
  readonly plan: string;
  readonly explain: readonly string[];
  /** Generic and custom plans the named statement counted during this mode's timed executions. */
  readonly genericPlans: number;
  readonly customPlans: number;
}

export interface PlanCacheRow {
  readonly statement: string;
  readonly setting: PlanCacheMode;
  readonly variant: Variant;
  readonly primedBy: 'small' | 'big';
  readonly measured: 'small' | 'big';
  readonly modes: Record<Mode, ModeMeasure>;
  /** Whether the statement has a parameter ('tenant' names it then). */
  readonly withParam: boolean;
  /** Whether 'tenant' named the statement (always, when the plan classes were known). */
  readonly tenantNamed: boolean;
  readonly timedRuns: number;
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

/** Plans made so far by the statement a mode names: `name` itself, or (prepare 'tenant') its plan-class variants. */
async function counters(pool: pg.Pool, name: string, mode: Mode): Promise<{ generic: number; custom: number }> {
  const { rows } = await pool.query<{ generic_plans: string; custom_plans: string }>(
    `SELECT coalesce(sum(generic_plans), 0) AS generic_plans, coalesce(sum(custom_plans), 0) AS custom_plans
       FROM pg_prepared_statements WHERE name = $1 OR ($2 AND name LIKE $1 || '\_%')`,
    [name, mode === 'tenant'],
  );
  return { generic: Number(rows[0]?.generic_plans ?? 0), custom: Number(rows[0]?.custom_plans ?? 0) };
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
  for (const [variant, setting] of scenarios) {
    for (const statement of STATEMENTS) {
      for (const [primedBy, measured] of [['small', 'big'], ['big', 'small']] as const) {
        if (statement.kind === 'deep page' && measured === 'small') continue; // a small tenant has no page 200
        const text = statementText(statement, variant);
        const name = preparedStatementName(text);
        const values = statement.withParam ? param : [];
        const pool = env.db.pool(env.db.appUrl, { max: 1, ...(setting === 'default' ? {} : { options: `-c ${setting}` }) });
        try {
          for (let i = 0; i < 6; i += 1) {
            await tenantQuery(pool, tenants[primedBy], text, values, { prepare: 'all' });
            await tenantQuery(pool, tenants[primedBy], text, values, { prepare: 'tenant' });
          }
          const times: Record<Mode, number[]> = { all: [], tenant: [], none: [] };
          const plans: Record<Mode, { generic: number; custom: number }> = {
            all: { generic: 0, custom: 0 },
            tenant: { generic: 0, custom: 0 },
            none: { generic: 0, custom: 0 },
          };
          // One untimed pass, then `timedRuns` passes; each pass runs the three modes in a rotated order.
          for (let i = -1; i < timedRuns; i += 1) {
            for (const mode of rotate(MODES, Math.max(i, 0))) {
              const before = await counters(pool, name, mode);
              const started = performance.now();
              await tenantQuery(pool, tenants[measured], text, values, { prepare: mode });
              const ms = performance.now() - started;
              const after = await counters(pool, name, mode);
              if (i < 0) continue;
              times[mode].push(ms);
              plans[mode].generic += after.generic - before.generic;
              plans[mode].custom += after.custom - before.custom;
            }
          }
          const planClass = await classOf(pool, tenants[measured]);
          const client = await pool.connect();
          try {
            const explainAs = async (mode: Mode): Promise<string[]> =>
              asTenant(client, tenants[measured], async () => {
                // 'tenant' names the statement per plan class; without classes, only with a parameter and custom plans forced.
                const named = mode === 'all' || (mode === 'tenant' && (planClass !== undefined || statement.withParam));
                if (mode === 'tenant' && named && planClass === undefined) await client.query(`SELECT set_config('plan_cache_mode', 'force_custom_plan', true)`);
                const executed = mode === 'tenant' ? preparedStatementName(text, planClass) : name;
                const args = statement.withParam ? `('${param[0]}')` : '';
                const sql = named ? `EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) EXECUTE ${executed}${args}` : `EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) ${text}`;
                const { rows } = await client.query<{ 'QUERY PLAN': string }>(sql, named ? [] : values);
                return rows.map((r) => r['QUERY PLAN']);
              });
            const modes = {} as Record<Mode, ModeMeasure>;
            for (const mode of MODES) {
              const explain = await explainAs(mode);
              modes[mode] = {
                ms: median(times[mode]),
                ratioToNone: median(times[mode].map((t, i) => t / times.none[i]!)),
                plan: planShape(explain),
                explain,
                genericPlans: plans[mode].generic,
                customPlans: plans[mode].custom,
              };
            }
            out.push({ statement: statement.label, setting, variant, primedBy, measured, modes, withParam: statement.withParam, tenantNamed: planClass !== undefined || statement.withParam, timedRuns });
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
