/**
 * Export and import of one tenant at 100k and 1M rows: rows per second of the library's streamed
 * export / import against a plain `COPY (SELECT ...) TO STDOUT` / `COPY ... FROM STDIN` of the same
 * rows in the same run, and the growth of this process's resident memory while each runs (sampled
 * every 20 ms; growth = peak − RSS just before). Files go through the disk, as a user's would.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { exportTenantStream } from '../src/portability/export.js';
import { importTenantStream } from '../src/portability/import.js';
import { createTestDatabase, type TestDatabase } from '../test/helpers/db.js';

const SCHEMA = (name: string) => `
  CREATE TABLE ${name} (
    tenant_id uuid NOT NULL,
    id bigint NOT NULL,
    name text NOT NULL,
    amount numeric(12,2),
    tags text[],
    payload jsonb,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
  );`;

export interface PortabilityRun {
  readonly rows: number;
  readonly bytes: number;
  readonly exportRowsPerSecond: number;
  readonly rawExportRowsPerSecond: number;
  readonly importRowsPerSecond: number;
  readonly rawImportRowsPerSecond: number;
  /** Median over rounds of (raw time / library time) in the same round. */
  readonly exportRatio: number;
  readonly importRatio: number;
  readonly rounds: number;
  /** Largest over rounds. */
  readonly exportRssGrowthMb: number;
  readonly importRssGrowthMb: number;
}

async function measured<T>(fn: () => Promise<T>): Promise<{ ms: number; rssGrowthMb: number }> {
  const before = process.memoryUsage.rss();
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  const started = performance.now();
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  peak = Math.max(peak, process.memoryUsage.rss());
  return { ms: performance.now() - started, rssGrowthMb: (peak - before) / 1e6 };
}

async function copyOut(client: pg.PoolClient, text: string, file: string): Promise<void> {
  await pipeline(client.query(copyTo(text)), createWriteStream(file));
}

export async function runPortability(sizes: readonly number[], log: (line: string) => void, rounds = 3): Promise<PortabilityRun[]> {
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-bench-port-'));
  const source: TestDatabase = await createTestDatabase({ schema: SCHEMA('items'), tenancy: { tables: ['items'] } });
  const target: TestDatabase = await createTestDatabase({ schema: SCHEMA('items') + SCHEMA('items_plain'), tenancy: { tables: ['items'] } });
  const runs: PortabilityRun[] = [];
  try {
    for (const rows of sizes) {
      const tenant = crypto.randomUUID();
      await source.superQuery(
        `INSERT INTO items SELECT $1, i, 'item ' || i || ' ünïcode', (i % 100000) / 100.0, ARRAY['a', 'b' || (i % 7)],
                jsonb_build_object('i', i, 'even', i % 2 = 0), '2026-01-01'::timestamptz + i * interval '1 second'
           FROM generate_series(1, $2::int) i`,
        [tenant, rows],
      );
      await source.superQuery('VACUUM ANALYZE items');
      log(`portability: ${rows.toLocaleString('en')} rows loaded`);
      const tenancy = source.config;
      const file = join(dir, `export-${rows}.ndjson`);
      const rawFile = join(dir, `raw-${rows}.copy`);
      const owner = target.pool(target.ownerUrl, { max: 1 });
      await target.superQuery(`GRANT INSERT, SELECT ON items_plain TO ${target.config.roles.owner}`);
      // Rounds alternate raw and library, in a rotated order; figures are medians over rounds.
      const samples: Array<{ raw: number; ours: number; rawIn: number; oursIn: number; rss: number; rssIn: number }> = [];
      for (let round = 0; round < rounds; round += 1) {
        const rawOut = async () => {
          // Raw COPY out as the app role, the same rows in the same order (one snapshot, like the export).
          const client = await source.appPool.connect();
          try {
            await client.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT set_config('app.tenant_id', '${tenant}', true)`);
            await copyOut(client, `COPY (SELECT * FROM items WHERE tenant_id = '${tenant}' ORDER BY tenant_id, id) TO STDOUT`, rawFile);
            await client.query('COMMIT');
          } finally {
            client.release();
          }
        };
        const oursOut = () => pipeline(exportTenantStream(source.appPool, tenant, { tenancy }), createWriteStream(file));
        const [first, second] = round % 2 ? [oursOut, rawOut] : [rawOut, oursOut];
        const a = await measured(first);
        const b = await measured(second);
        const [raw, ours] = round % 2 ? [b, a] : [a, b];
        // Raw COPY in, as the owner into the same table without RLS; ours as the owner into the RLS table.
        const rawInto = async () => {
          const ownerClient = await owner.connect();
          try {
            await ownerClient.query('BEGIN');
            await pipeline(createReadStream(rawFile), ownerClient.query(copyFrom('COPY items_plain FROM STDIN')));
            await ownerClient.query('COMMIT');
          } finally {
            ownerClient.release();
          }
        };
        const oursInto = async () => {
          await importTenantStream(owner, tenant, createReadStream(file), { tenancy: target.config });
        };
        const [firstIn, secondIn] = round % 2 ? [oursInto, rawInto] : [rawInto, oursInto];
        const c = await measured(firstIn);
        const d = await measured(secondIn);
        const [rawIn, oursIn] = round % 2 ? [d, c] : [c, d];
        const { rows: counted } = await target.superQuery(`SELECT (SELECT count(*) FROM items)::int AS a, (SELECT count(*) FROM items_plain)::int AS b`);
        if (counted[0].a !== rows || counted[0].b !== rows) throw new Error(`imported ${counted[0].a} and ${counted[0].b} of ${rows} rows`);
        await target.superQuery('TRUNCATE items, items_plain');
        samples.push({ raw: raw.ms, ours: ours.ms, rawIn: rawIn.ms, oursIn: oursIn.ms, rss: ours.rssGrowthMb, rssIn: oursIn.rssGrowthMb });
      }
      const median = (values: number[]) => values.sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
      const bytes = (await stat(file)).size;
      const run: PortabilityRun = {
        rows,
        bytes,
        rounds,
        exportRowsPerSecond: rows / (median(samples.map((x) => x.ours)) / 1000),
        rawExportRowsPerSecond: rows / (median(samples.map((x) => x.raw)) / 1000),
        importRowsPerSecond: rows / (median(samples.map((x) => x.oursIn)) / 1000),
        rawImportRowsPerSecond: rows / (median(samples.map((x) => x.rawIn)) / 1000),
        exportRatio: median(samples.map((x) => x.raw / x.ours)),
        importRatio: median(samples.map((x) => x.rawIn / x.oursIn)),
        exportRssGrowthMb: Math.max(...samples.map((x) => x.rss)),
        importRssGrowthMb: Math.max(...samples.map((x) => x.rssIn)),
      };
      runs.push(run);
      log(`portability ${rows}: export ${fmt(run.exportRowsPerSecond)} rows/s (raw COPY ${fmt(run.rawExportRowsPerSecond)}, ratio ${run.exportRatio.toFixed(2)}), import ${fmt(run.importRowsPerSecond)} rows/s (raw COPY ${fmt(run.rawImportRowsPerSecond)}, ratio ${run.importRatio.toFixed(2)}), RSS +${run.exportRssGrowthMb.toFixed(1)} / +${run.importRssGrowthMb.toFixed(1)} MB`);
      await rm(file);
      await rm(rawFile);
      await source.superQuery('DELETE FROM items');
    }
    return runs;
  } finally {
    await Promise.all([source.drop(), target.drop()]);
    await rm(dir, { recursive: true, force: true });
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en');

export function portabilityTargets(runs: readonly PortabilityRun[]) {
  const big = runs.at(-1)!;
  const { exportRatio, importRatio } = big;
  const rss = Math.max(...runs.map((r) => Math.max(r.exportRssGrowthMb, r.importRssGrowthMb)));
  return [
    { target: `export ≥ 0.5× raw COPY TO (${fmt(big.rows)} rows)`, ok: exportRatio >= 0.5, measured: `${exportRatio.toFixed(2)}×` },
    { target: `import ≥ 0.5× raw COPY FROM (${fmt(big.rows)} rows)`, ok: importRatio >= 0.5, measured: `${importRatio.toFixed(2)}×` },
    { target: 'RSS growth < 100 MB during export and import', ok: rss < 100, measured: `${rss.toFixed(1)} MB at most` },
  ];
}

export function renderPortability(runs: readonly PortabilityRun[]): string {
  const lines = [
    '## Tenant export and import (src/portability)',
    '',
    'One tenant of a table with text, numeric, array, jsonb and timestamptz columns. Export: the library\'s NDJSON stream',
    'to a file, against `COPY (SELECT * ... ORDER BY key) TO STDOUT` of the same rows to a file (both as the app role, one',
    'REPEATABLE READ snapshot). Import: the library\'s import of that file (COPY FROM STDIN into a temporary table, then',
    'INSERT ... SELECT under RLS WITH CHECK, checksums verified) as the owner role, against `COPY ... FROM STDIN` of the raw',
    'file into the same table without RLS. RSS growth: peak resident memory of the node process during the run minus',
    'just before (sampled every 20 ms), the largest over rounds. Each size runs in rounds alternating which of the two goes',
    'first; rows/s are medians over rounds, a ratio the median of the per-round ratios (raw time / library time).',
    '',
    '| rows | file | export rows/s | raw COPY TO rows/s | ratio | import rows/s | raw COPY FROM rows/s | ratio | RSS growth export / import |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map(
      (r) =>
        `| ${fmt(r.rows)} | ${(r.bytes / 1e6).toFixed(0)} MB | ${fmt(r.exportRowsPerSecond)} | ${fmt(r.rawExportRowsPerSecond)} | ${r.exportRatio.toFixed(2)}× | ${fmt(r.importRowsPerSecond)} | ${fmt(r.rawImportRowsPerSecond)} | ${r.importRatio.toFixed(2)}× | ${r.exportRssGrowthMb.toFixed(1)} / ${r.importRssGrowthMb.toFixed(1)} MB |`,
    ),
    '',
    ...portabilityTargets(runs).map((t) => `- ${t.ok ? 'met' : '**NOT MET**'}: ${t.target}: ${t.measured}`),
    '',
  ];
  return lines.join('\n');
}

// `tsx bench/portability.ts`: this measurement alone (DATABASE_URL, or an embedded server).
if (import.meta.url === `file://${process.argv[1]}`) {
  const { startEmbeddedPostgres } = await import('../test/helpers/embedded.js');
  let stop: (() => Promise<void>) | undefined;
  if (!process.env.DATABASE_URL) {
    const server = await startEmbeddedPostgres();
    process.env.DATABASE_URL = server.url;
    stop = server.stop;
  }
  try {
    const sizes = process.env.PORTABILITY_ROWS ? process.env.PORTABILITY_ROWS.split(',').map(Number) : process.env.BENCH_QUICK === '1' ? [10_000, 100_000] : [100_000, 1_000_000];
    console.log(renderPortability(await runPortability(sizes, console.log)));
  } finally {
    await stop?.();
  }
}
