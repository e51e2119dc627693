/**
 * The "Peers" section of bench/RESULTS.md (bench/peers.ts): the issue-10 table and its targets.
 * `BENCH_ONLY=peers` rewrites only this section of an existing RESULTS.md, between its markers.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { FLOOR, PEERS, type PeersResults } from './peers.js';
import { pairRatio } from './stats.js';
import type { Target } from './report.js';
import type { BenchEnv } from './setup.js';

export const START = '<!-- peers:start -->';
export const END = '<!-- peers:end -->';

const f = (n: number, digits = 3) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const x = (n: number) => `${f(n, 2)}×`;

export function peersTargets(r: PeersResults): Target[] {
  const lat = (name: string) => r.latency.get(name)!;
  const thr = (name: string) => r.throughput.get(name)!;
  const floor = pairRatio(r.floor.get(FLOOR.ours)!, r.floor.get(FLOOR.named)!);
  const floorOne = pairRatio(r.floor.get(FLOOR.oursOne)!, r.floor.get(FLOOR.namedOne)!);
  const vsPostgresJs = pairRatio(thr(PEERS.pipelined), thr(PEERS.postgresJs));
  const wideVsPostgresJs = pairRatio(thr(PEERS.pipelinedWide), thr(PEERS.postgresJs));
  return [
    { target: 'tenantQuery, generated schema: throughput ≥ 1.0 × pg bare', measured: x(thr(PEERS.ours).ratio), ok: thr(PEERS.ours).ratio >= 1.0 },
    { target: 'tenantQuery, generated schema: latency ≤ 1.05 × pg bare', measured: x(lat(PEERS.ours).ratio), ok: lat(PEERS.ours).ratio <= 1.05 },
    { target: 'tenantQuery, own policy: latency ≤ 1.1 × pg bare', measured: x(lat(PEERS.own).ratio), ok: lat(PEERS.own).ratio <= 1.1 },
    { target: 'tenantQuery, own policy: throughput ≥ 0.95 × pg bare', measured: x(thr(PEERS.own).ratio), ok: thr(PEERS.own).ratio >= 0.95 },
    { target: 'floor, one connection: tenantQuery key lookup ≤ 1.1 × pg named lookup', measured: x(floor), ok: floor <= 1.1 },
    { target: "floor, one connection: tenantQuery('SELECT 1') vs pg named SELECT 1 (information)", measured: x(floorOne), ok: floorOne <= 1.1, info: true },
    { target: 'pipelined (4 × 8): throughput ≥ 1.3 × pg bare', measured: x(thr(PEERS.pipelined).ratio), ok: thr(PEERS.pipelined).ratio >= 1.3 },
    { target: 'pipelined (4 × 8): throughput ≥ 1.0 × postgres.js bare', measured: x(vsPostgresJs), ok: vsPostgresJs >= 1.0 },
    { target: 'pipelined (2 × 16, information): throughput ≥ 1.0 × postgres.js bare', measured: x(wideVsPostgresJs), ok: wideVsPostgresJs >= 1.0, info: true },
  ];
}

export function renderPeers(env: BenchEnv, r: PeersResults, notes: readonly string[] = []): string {
  const lines: string[] = [START, '## Peers: one tenant-scoped count(*), the bare drivers side by side', ''];
  const { latency: lp, throughput: tp, floor: fp } = r.plans;
  lines.push(
    `Data: ${env.shape.rows.toLocaleString('en-US')} rows, ${env.shape.tenants} small tenants + 1 big one; the count is of one small tenant's`,
    `rows (cycling over 100 of them). ${env.serverVersion.split(' on ')[0]}. Latency: one caller, ${lp.rounds} rounds of ${lp.perRound} per variant (warm-up`,
    `${lp.warmup}). Throughput: ${tp.callers} callers on 8 connections (pg.Pool max 8, postgres.js max 8), ${tp.rounds} rounds of ${tp.durationMs} ms per`,
    'variant. Variants rotate each round; a ratio is the median over rounds of the ratio to the baseline of the same round.',
    `Load average (1 min) ${f(r.load[0], 1)} at the start, ${f(r.load[1], 1)} at the end, on 2 cores shared with other work: the`,
    'per-round ranges below show how much that moved the figures.',
    '',
    '| target | measured | |',
    '|---|---|---|',
    ...peersTargets(r).map((t) => `| ${t.target} | ${t.measured} | ${t.ok ? (t.info ? 'met (information)' : '**met**') : t.info ? 'not met (information)' : '**not met**'} |`),
    '',
    '| approach | latency p50 ms | latency ratio | throughput ops/s | throughput ratio | per-round throughput ratios |',
    '|---|---:|---:|---:|---:|---|',
  );
  for (const name of Object.values(PEERS)) {
    const l = r.latency.get(name)!;
    const t = r.throughput.get(name)!;
    lines.push(`| ${name} | ${f(l.p50)} | ${x(l.ratio)} | ${f(t.opsPerSec, 0)} | ${x(t.ratio)} | ${f(t.ratioRange[0], 2)} – ${f(t.ratioRange[1], 2)} |`);
  }
  lines.push(
    '',
    `The floor, on ONE connection (a pool of 1), one caller, ${fp.rounds} rounds of ${fp.perRound}:`,
    '',
    '| variant | p50 µs | p95 µs | ratio |',
    '|---|---:|---:|---:|',
  );
  const pairs: Array<[string, string]> = [
    [FLOOR.named, FLOOR.named],
    [FLOOR.ours, FLOOR.named],
    [FLOOR.namedOne, FLOOR.namedOne],
    [FLOOR.oursOne, FLOOR.namedOne],
    [FLOOR.heldOne, FLOOR.namedOne],
    [FLOOR.batch0, FLOOR.namedOne],
    [FLOOR.batch, FLOOR.namedOne],
  ];
  for (const [name, base] of pairs) {
    const v = r.floor.get(name)!;
    lines.push(`| ${name} | ${f(v.p50 * 1000, 0)} | ${f(v.p95 * 1000, 0)} | ${x(pairRatio(v, r.floor.get(base)!))} |`);
  }
  lines.push('', ...notes, END, '');
  return lines.join('\n');
}

/** Replaces the section in `file` (or appends it). */
export function writePeersSection(file: URL, section: string): void {
  const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const start = current.indexOf(START);
  const end = current.indexOf(END);
  const next = start >= 0 && end > start ? current.slice(0, start) + section.trimEnd() + current.slice(end + END.length) : `${current.trimEnd()}\n\n${section}`;
  writeFileSync(file, next);
}
