/**
 * Fleet migrations: `migrateAllTenants` over N tenant databases of one server (each with the
 * application's table, from a template), concurrency 1 vs 8, same run: wall time and the peak
 * number of client connections on the server (sampled every 20 ms from pg_stat_activity).
 * `tsx bench/fleet.ts` prints the markdown (DATABASE_URL or an embedded server); bench/run.ts calls
 * `benchFleet()`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { generateRlsSql, migrateAllTenants } from '../src/index.js';
import { createTestDatabase, newTenantId, ORDERS_SCHEMA, serverUrl, withUrl } from '../test/helpers/db.js';
import { startEmbeddedPostgres } from '../test/helpers/embedded.js';

export interface FleetBench {
  readonly databases: number;
  readonly runs: ReadonlyArray<{ concurrency: number; seconds: number; peakConnections: number; ok: boolean }>;
  readonly markdown: string;
}

export async function benchFleet(options: { databases: number; log?: (line: string) => void }): Promise<FleetBench> {
  const { databases } = options;
  const root = new pg.Client({ connectionString: serverUrl() });
  await root.connect();
  const shared = await createTestDatabase({ schema: ORDERS_SCHEMA, tenancy: { tables: ['orders'] } });
  const template = `${shared.name}_tpl`;
  const names: string[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-bench-fleet-'));
  try {
    await root.query(`CREATE DATABASE ${template}`);
    const tpl = new pg.Client({ connectionString: withUrl(serverUrl(), { database: template }) });
    await tpl.connect();
    await tpl.query(ORDERS_SCHEMA);
    await tpl.end();
    for (const file of generateRlsSql(shared.config)) await writeFile(join(dir, file.name), file.sql);
    const runs: Array<FleetBench['runs'][number]> = [];
    for (const concurrency of [1, 8]) {
      // Fresh databases for each run, so both migrate everything.
      for (const name of names.splice(0)) await root.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await shared.superQuery('DELETE FROM linkbay.tenants');
      for (let i = 0; i < databases; i += 1) {
        const name = `${shared.name}_f${concurrency}_${i}`;
        await root.query(`CREATE DATABASE ${name} TEMPLATE ${template} STRATEGY FILE_COPY`);
        names.push(name);
        await shared.superQuery(`INSERT INTO linkbay.tenants (id, slug, name, database_url) VALUES ($1, $2, $2, $3)`, [newTenantId(), `f${i}`, withUrl(shared.appUrl, { database: name })]);
      }
      options.log?.(`fleet: ${databases} databases, concurrency ${concurrency}`);
      let peak = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const { rows } = await root.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'`);
          peak = Math.max(peak, rows[0].n - 1); // less the sampler itself
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      const started = performance.now();
      const result = await migrateAllTenants({ databaseUrl: shared.superUrl, directory: dir, concurrency });
      const seconds = (performance.now() - started) / 1000;
      sampling = false;
      await sampler;
      runs.push({ concurrency, seconds, peakConnections: peak, ok: result.ok });
      for (const r of result.results) if (r.status === 'failed') options.log?.(`fleet: FAILED ${r.database}: ${(r.error as { code?: string }).code} ${r.error.message}`);
    }
    const base = runs[0]!.seconds;
    const markdown = [
      `## Fleet migrations: ${databases} tenant databases on one server`,
      '',
      'Every database gets the generated migrations (roles, registry, one tenant table); the shared one is already current. Peak connections: client backends on the server during the run, sampled every 20 ms.',
      '',
      '| concurrency | wall time s | ratio to concurrency 1 | peak connections | all migrated |',
      '|---|---|---|---|---|',
      ...runs.map((r) => `| ${r.concurrency} | ${r.seconds.toFixed(1)} | ${(r.seconds / base).toFixed(2)}× | ${r.peakConnections} | ${r.ok ? 'yes' : 'NO'} |`),
      '',
    ].join('\n');
    return { databases, runs, markdown };
  } finally {
    for (const name of [...names, template]) await root.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
    await root.end();
    await shared.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  let stop: (() => Promise<void>) | undefined;
  if (!process.env.DATABASE_URL) {
    const server = await startEmbeddedPostgres();
    process.env.DATABASE_URL = server.url;
    stop = server.stop;
  }
  try {
    console.log((await benchFleet({ databases: Number(process.env.FLEET_DATABASES ?? 200), log: console.error })).markdown);
  } finally {
    await stop?.();
  }
}
