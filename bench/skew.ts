/**
 * RLS on a skewed data set: a small tenant and the big one (30% of the rows), for a count, a first
 * page and a deep page, under both policy forms, against an explicit WHERE on a table without RLS.
 *
 * All three run as the app role on one connection, inside one transaction that has the tenant set
 * (so the RLS tables see it), as unnamed statements (pg's default: planned for each execution). The
 * timed part is the statement alone; how the tenant gets there is latency.ts's subject.
 * RESULTS.md's targets use the server's clock; the client's is shown next to it.
 */
import type pg from 'pg';
import { median, rotate } from './stats.js';
import type { BenchEnv } from './setup.js';

export type QueryKind = 'count' | 'first page' | 'deep page';
export type Variant = 'explicit WHERE' | 'RLS bare' | 'RLS initplan';
export const VARIANTS: readonly Variant[] = ['explicit WHERE', 'RLS bare', 'RLS initplan'];

const TABLE_OF: Record<Variant, string> = {
  'explicit WHERE': 'orders_plain',
  'RLS bare': 'orders',
  'RLS initplan': 'orders_initplan',
};

/** The statement of `kind` on `variant`'s table: the tenant only in an explicit WHERE on orders_plain. */
export function skewQuery(kind: QueryKind, variant: Variant, tenant: string): { text: string; values: string[] } {
  const plain = variant === 'explicit WHERE';
  const from = `FROM ${TABLE_OF[variant]}${plain ? ' WHERE tenant_id = $1' : ''}`;
  const text =
    kind === 'count'
      ? `SELECT count(*) ${from}`
      : `SELECT id, item, amount, created_at ${from} ORDER BY created_at DESC LIMIT 50${kind === 'deep page' ? ' OFFSET 10000' : ''}`;
  return { text, values: plain ? [tenant] : [] };
}

export interface SkewCell {
  readonly kind: QueryKind;
  readonly tenantLabel: string;
  readonly tenantRows: number;
  readonly variants: Map<Variant, SkewMeasure>;
}

/** Medians over rounds; ratios are medians of per-round ratios against explicit WHERE. */
export interface SkewMeasure {
  /** Client wall time of the statement. */
  readonly clientMs: number;
  readonly clientRatio: number;
  /** Server planning + execution time (EXPLAIN ANALYZE, TIMING OFF). */
  readonly serverMs: number;
  readonly serverRatio: number;
  /** The server time's two parts. */
  readonly planningMs: number;
  readonly executionMs: number;
  /** EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) output. */
  readonly plan: string[];
  readonly rows: number;
}

export interface SkewPlan {
  readonly rounds: number;
  /** Time spent on each variant per round (at least 3 executions). */
  readonly budgetMs: number;
}

/** Runs `fn` on `client` inside a transaction in which the tenant is set (as the app would have it). */
export async function asTenant<T>(client: pg.PoolClient, tenant: string, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT set_config('app.tenant_id', $1, true)`, [tenant]);
    return await fn();
  } finally {
    await client.query('COMMIT');
  }
}

export async function explain(client: pg.PoolClient, query: { text: string; values: string[] }): Promise<string[]> {
  const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) ${query.text}`, query.values);
  return rows.map((r) => r['QUERY PLAN']);
}

/** "Limit → Index Scan Backward using x on t": the plan's nodes without their figures. */
export function planShape(plan: readonly string[]): string {
  return plan
    .filter((line, i) => i === 0 || line.includes('->') || /^\s*InitPlan/.test(line))
    .map((line) => line.replace(/^\s*(->\s*)?/, '').replace(/\s*\(actual.*$/, '').replace(/\s*\(returns.*$/, ''))
    .join(' → ');
}

export async function runSkew(env: BenchEnv, plan: SkewPlan): Promise<SkewCell[]> {
  const pool = env.db.pool(env.db.appUrl, { max: 1 });
  const client = await pool.connect();
  const cells: Array<[QueryKind, string, string, number]> = [
    ['count', 'small', env.smallTenant, env.smallRows],
    ['count', 'big', env.bigTenant, env.bigRows],
    ['first page', 'small', env.smallTenant, env.smallRows],
    ['first page', 'big', env.bigTenant, env.bigRows],
    ['deep page', 'big', env.bigTenant, env.bigRows],
  ];
  try {
    const out: SkewCell[] = [];
    for (const [kind, tenantLabel, tenant, tenantRows] of cells) {
      out.push(await asTenant(client, tenant, () => measureCell(client, kind, tenant, plan, tenantLabel, tenantRows)));
    }
    return out;
  } finally {
    client.release();
  }
}

async function measureCell(
  client: pg.PoolClient,
  kind: QueryKind,
  tenant: string,
  plan: SkewPlan,
  tenantLabel: string,
  tenantRows: number,
): Promise<SkewCell> {
  const queries = new Map(VARIANTS.map((v) => [v, skewQuery(kind, v, tenant)]));
  // Same answer from every variant, or the comparison means nothing.
  const answers = new Map<Variant, string>();
  for (const [variant, query] of queries) {
    const { rows } = await client.query(query);
    answers.set(variant, JSON.stringify(rows));
  }
  if (new Set(answers.values()).size !== 1) throw new Error(`skew ${kind} (${tenantLabel}): variants disagree`);
  const rows = JSON.parse(answers.get('explicit WHERE')!).length as number;

  // Two clocks: the client's wall time of the statement, and the server's planning + execution time
  // (EXPLAIN ANALYZE with TIMING OFF), which other processes on this 2-core machine disturb less.
  const timeFor = async (variant: Variant): Promise<{ client: number; server: number; planning: number; execution: number }> => {
    const query = queries.get(variant)!;
    const explained = { text: `EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, COSTS OFF, BUFFERS OFF) ${query.text}`, values: query.values };
    const client_: number[] = [];
    const planning: number[] = [];
    const execution: number[] = [];
    const until = performance.now() + plan.budgetMs;
    while (client_.length < 3 || (performance.now() < until && client_.length < 200)) {
      const started = performance.now();
      await client.query(query);
      client_.push(performance.now() - started);
      const { rows: lines } = await client.query<{ 'QUERY PLAN': string }>(explained);
      const text = lines.map((l) => l['QUERY PLAN']).join('\n');
      planning.push(Number(/Planning Time: ([\d.]+)/.exec(text)?.[1]));
      execution.push(Number(/Execution Time: ([\d.]+)/.exec(text)?.[1]));
    }
    const server = planning.map((p, i) => p + execution[i]!);
    return { client: median(client_), server: median(server), planning: median(planning), execution: median(execution) };
  };
  for (const variant of VARIANTS) await timeFor(variant); // warm-up: caches, JIT, row parsers
  const perRound = new Map<Variant, Array<{ client: number; server: number; planning: number; execution: number }>>(VARIANTS.map((v) => [v, []]));
  for (let round = 0; round < plan.rounds; round += 1) {
    for (const variant of rotate(VARIANTS, round)) perRound.get(variant)!.push(await timeFor(variant));
  }
  const base = perRound.get('explicit WHERE')!;
  const variants = new Map<Variant, SkewMeasure>();
  for (const variant of VARIANTS) {
    const times = perRound.get(variant)!;
    variants.set(variant, {
      clientMs: median(times.map((t) => t.client)),
      serverMs: median(times.map((t) => t.server)),
      clientRatio: median(times.map((t, i) => t.client / base[i]!.client)),
      serverRatio: median(times.map((t, i) => t.server / base[i]!.server)),
      planningMs: median(times.map((t) => t.planning)),
      executionMs: median(times.map((t) => t.execution)),
      plan: await explain(client, queries.get(variant)!),
      rows,
    });
  }
  return { kind, tenantLabel, tenantRows, variants };
}
