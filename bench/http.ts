/**
 * HTTP: requests per second of Koa routes with and without the tenant middleware, and of the full
 * path (resolve + tenantQuery of one row, default prepare mode) against a bare route doing the same
 * query with an explicit WHERE. autocannon in this process, the server in a child process; every
 * variant sends the same requests (same x-tenant-id header, same tenants and rows), only the route
 * differs. Variants rotated in each round, ratios per round, medians over rounds.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import { median } from './stats.js';
import type { BenchEnv } from './setup.js';

export interface HttpOptions {
  rounds: number;
  durationSeconds: number;
  connections: number;
}

export interface HttpVariant {
  readonly name: string;
  /** Per round, in round order. */
  readonly rps: number[];
  readonly meanMs: number[];
  readonly p99Ms: number[];
}

export interface HttpResult {
  variants: HttpVariant[];
  /** Median over rounds of (behind multitenant() / without), and the per-round range. */
  warmCacheRatio: number;
  warmCacheRange: readonly [number, number];
  /** Median over rounds of (full path / bare route with explicit WHERE), and the per-round range. */
  fullPathRatio: number;
  fullPathRange: readonly [number, number];
  rounds: number;
  durationSeconds: number;
  connections: number;
}

export const HTTP_TARGETS = { warmCache: 0.9, fullPath: 0.8 } as const;

interface Variant {
  readonly name: string;
  readonly requests: autocannon.Request[];
  /** What one response of this variant must be (checked before timing). */
  readonly expect: (body: unknown, lookup: { tenant: string; id: string }) => boolean;
}

/** Starts bench/http-server.ts; resolves with its base URL once it listens (rejects if it dies first). */
async function startServer(env: BenchEnv) {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./http-server.ts', import.meta.url).pathname], {
    env: { ...process.env, BENCH_APP_URL: env.db.appUrl, BENCH_TENANCY: JSON.stringify({ roles: env.db.config.roles, tables: ['orders'] }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  };
  try {
    const line = await Promise.race([
      once(createInterface({ input: child.stdout! }), 'line').then(([l]) => l as string),
      exited.then(([code]) => Promise.reject(new Error(`bench/http-server.ts exited (${code}) before listening`))),
    ]);
    return { base: `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export async function runHttp(env: BenchEnv, options: HttpOptions): Promise<HttpResult> {
  // The lookup tenants must exist in the registry for the middleware to resolve them.
  const tenants = env.lookups.slice(0, 100);
  for (const [i, { tenant }] of tenants.entries()) {
    await env.db.adminPool.query(`INSERT INTO linkbay.tenants (id, slug, name) VALUES ($1, $2, $2) ON CONFLICT (id) DO NOTHING`, [tenant, `bench-${i}`]);
  }
  const server = await startServer(env);
  try {
    const withTenant = (path: (l: { tenant: string; id: string }) => string): autocannon.Request[] =>
      tenants.map((l) => ({ method: 'GET', path: path(l), headers: { 'x-tenant-id': l.tenant } }));
    const ok = (body: unknown) => (body as { ok?: unknown } | null)?.ok === true;
    const row = (body: unknown, l: { id: string }) => String((body as { id?: unknown } | null)?.id) === l.id;
    const variants: Variant[] = [
      { name: 'bare route, no tenant middleware', requests: withTenant(() => '/bare/ping'), expect: ok },
      { name: 'same route behind multitenant() (warm cache)', requests: withTenant(() => '/mt/ping'), expect: ok },
      { name: 'bare route: pool.query of one row, explicit WHERE, no RLS', requests: withTenant((l) => `/bare/orders/${l.tenant}/${l.id}`), expect: row },
      { name: "full path: multitenant() + tenantQuery of one row under RLS (default prepare: 'tenant')", requests: withTenant((l) => `/mt/orders/${l.id}`), expect: row },
    ];
    // Every variant answers what it should for every tenant: a route that lost the tenant (404,
    // or a 204 with no row) would otherwise be timed as a fast success.
    for (const v of variants) {
      for (const [i, request] of v.requests.entries()) {
        const response = await fetch(`${server.base}${request.path}`, { headers: request.headers as Record<string, string> });
        const body: unknown = response.status === 200 ? await response.json() : undefined;
        if (response.status !== 200 || !v.expect(body, tenants[i]!)) {
          throw new Error(`bench http: ${v.name}: ${request.path} answered ${response.status} ${JSON.stringify(body)}`);
        }
      }
    }
    const results: HttpVariant[] = variants.map((v) => ({ name: v.name, rps: [], meanMs: [], p99Ms: [] }));
    const fire = async (v: Variant, seconds: number) => {
      const result = await autocannon({ url: server.base, connections: options.connections, duration: seconds, requests: v.requests });
      if (result.non2xx > 0 || result.errors > 0 || result['2xx'] === 0) {
        throw new Error(`bench http: ${v.name}: ${result['2xx']} 2xx, ${result.non2xx} non-2xx, ${result.errors} errors`);
      }
      return result;
    };
    for (const v of variants) await fire(v, 1); // warm-up: caches, prepared statements, JIT
    const warm: number[] = [];
    const full: number[] = [];
    for (let round = 0; round < options.rounds; round += 1) {
      const rps: number[] = [];
      for (let k = 0; k < variants.length; k += 1) {
        const index = (k + round) % variants.length;
        const result = await fire(variants[index]!, options.durationSeconds);
        // Completed 2xx responses over the measured time (the per-second histogram's mean would
        // weigh a partial last second like a full one).
        rps[index] = result['2xx'] / result.duration;
        results[index]!.rps.push(rps[index]);
        results[index]!.meanMs.push(result.latency.average);
        results[index]!.p99Ms.push(result.latency.p99);
      }
      warm.push(rps[1]! / rps[0]!);
      full.push(rps[3]! / rps[2]!);
    }
    const range = (xs: number[]) => [Math.min(...xs), Math.max(...xs)] as const;
    return {
      variants: results,
      warmCacheRatio: median(warm),
      warmCacheRange: range(warm),
      fullPathRatio: median(full),
      fullPathRange: range(full),
      ...options,
    };
  } finally {
    await server.stop();
  }
}

export function httpTargets(result: HttpResult): Array<{ target: string; measured: string; ok: boolean }> {
  const r = (n: number, [lo, hi]: readonly [number, number]) => `${n.toFixed(2)}× (rounds ${lo.toFixed(2)} – ${hi.toFixed(2)})`;
  return [
    {
      target: `HTTP: route behind multitenant() (warm cache) ≥ ${HTTP_TARGETS.warmCache} × the same route without it`,
      measured: r(result.warmCacheRatio, result.warmCacheRange),
      ok: result.warmCacheRatio >= HTTP_TARGETS.warmCache,
    },
    {
      target: `HTTP: full path (resolve + tenantQuery, default prepare) ≥ ${HTTP_TARGETS.fullPath} × bare route with explicit WHERE`,
      measured: r(result.fullPathRatio, result.fullPathRange),
      ok: result.fullPathRatio >= HTTP_TARGETS.fullPath,
    },
  ];
}

export function renderHttp(result: HttpResult): string {
  const rows = result.variants
    .map((v) => `| ${v.name} | ${median(v.rps).toFixed(0)} | ${median(v.meanMs).toFixed(2)} | ${median(v.p99Ms).toFixed(0)} |`)
    .join('\n');
  const mark = (ok: boolean) => (ok ? '**met**' : '**not met**');
  return `## HTTP (Koa): resolution and the full request path

autocannon (in the bench process), ${result.connections} connections, ${result.rounds} rounds of ${result.durationSeconds} s per variant (rotated
each round, after a 1 s warm-up each), the Koa server in a child process with a pg pool of 8. Every variant sends the same
requests, cycling over 100 tenants with their x-tenant-id header; only the route differs. Every route's answer is checked
for every tenant before timing. req/s = 2xx responses / duration; ratios are per round, median over rounds. autocannon,
the server and PostgreSQL share the 2 cores.

| variant | req/s (median) | mean latency ms | p99 latency ms |
|---|---:|---:|---:|
${rows}

| target | measured | |
|---|---|---|
${httpTargets(result).map((t) => `| ${t.target} | ${t.measured} | ${mark(t.ok)} |`).join('\n')}
`;
}
