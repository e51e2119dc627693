/**
 * HTTP: requests per second of Koa routes with and without the tenant middleware, and of the full
 * path (resolve + tenantQuery of one row) against a bare route doing the same query with an
 * explicit WHERE. autocannon in this process, the server in a child process; variants rotated in
 * each round, ratios per round, medians over rounds.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import type { BenchEnv } from './setup.js';

export interface HttpOptions {
  rounds: number;
  durationSeconds: number;
  connections: number;
}

export interface HttpResult {
  variants: Array<{ name: string; rps: number[]; p50ms: number[] }>;
  warmCacheRatio: number;
  fullPathRatio: number;
  rounds: number;
  durationSeconds: number;
  connections: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function runHttp(env: BenchEnv, options: HttpOptions): Promise<HttpResult> {
  // The lookup tenants must exist in the registry for the middleware to resolve them.
  const tenants = env.lookups.slice(0, 100);
  for (const [i, { tenant }] of tenants.entries()) {
    await env.db.adminPool.query(`INSERT INTO linkbay.tenants (id, slug, name) VALUES ($1, $2, $2) ON CONFLICT (id) DO NOTHING`, [tenant, `bench-${i}`]);
  }
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./http-server.ts', import.meta.url).pathname], {
    env: { ...process.env, BENCH_APP_URL: env.db.appUrl, BENCH_TENANCY: JSON.stringify({ roles: env.db.config.roles, tables: ['orders'] }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    const base = `http://127.0.0.1:${JSON.parse(line).port}`;
    const variants: Array<{ name: string; requests: autocannon.Request[] }> = [
      { name: 'bare route, no tenant middleware', requests: [{ method: 'GET', path: '/bare' }] },
      {
        name: 'same route behind multitenant() (warm cache)',
        requests: tenants.map(({ tenant }) => ({ method: 'GET', path: '/mt/ping', headers: { 'x-tenant-id': tenant } })),
      },
      {
        name: 'bare route: pool.query of one row, explicit WHERE, no RLS',
        requests: tenants.map(({ tenant, id }) => ({ method: 'GET', path: `/bare/orders/${tenant}/${id}` })),
      },
      {
        name: 'full path: multitenant() + tenantQuery of one row under RLS',
        requests: tenants.map(({ tenant, id }) => ({ method: 'GET', path: `/mt/orders/${id}`, headers: { 'x-tenant-id': tenant } })),
      },
    ];
    const results = variants.map((v) => ({ name: v.name, rps: [] as number[], p50ms: [] as number[] }));
    const fire = (requests: autocannon.Request[], seconds: number) =>
      autocannon({ url: base, connections: options.connections, duration: seconds, requests });
    for (const v of variants) await fire(v.requests, 1); // warm-up: caches, prepared statements, JIT
    const warm: number[] = [];
    const full: number[] = [];
    for (let round = 0; round < options.rounds; round += 1) {
      const rps: number[] = [];
      for (let k = 0; k < variants.length; k += 1) {
        const index = (k + round) % variants.length;
        const result = await fire(variants[index]!.requests, options.durationSeconds);
        if (result.non2xx > 0 || result.errors > 0) throw new Error(`${variants[index]!.name}: ${result.non2xx} non-2xx, ${result.errors} errors`);
        rps[index] = result.requests.average;
        results[index]!.rps.push(result.requests.average);
        results[index]!.p50ms.push(result.latency.p50);
      }
      warm.push(rps[1]! / rps[0]!);
      full.push(rps[3]! / rps[2]!);
    }
    return { variants: results, warmCacheRatio: median(warm), fullPathRatio: median(full), ...options };
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
}

export function renderHttp(result: HttpResult): string {
  const rows = result.variants.map((v) => `| ${v.name} | ${median(v.rps).toFixed(0)} | ${median(v.p50ms).toFixed(1)} |`).join('\n');
  const mark = (ok: boolean) => (ok ? '**met**' : '**not met**');
  return `## HTTP (Koa): resolution and the full request path

autocannon, ${result.connections} connections, ${result.rounds} rounds of ${result.durationSeconds} s per variant (rotated), the
server in a child process with a pool of 8; requests cycle over 100 tenants. Ratios are per round, median over rounds.

| variant | req/s (median) | latency p50 ms |
|---|---:|---:|
${rows}

| target | measured | |
|---|---|---|
| route behind multitenant() (warm cache) ≥ 0.9 × the same route without it | ${result.warmCacheRatio.toFixed(2)}× | ${mark(result.warmCacheRatio >= 0.9)} |
| full path (resolve + tenantQuery) ≥ 0.8 × bare route with explicit WHERE | ${result.fullPathRatio.toFixed(2)}× | ${mark(result.fullPathRatio >= 0.8)} |
`;
}
