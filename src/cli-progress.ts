import type { FleetOutcome, FleetProgress } from './fleet-migrations.js';
import { printable } from './printable.js';

/**
 * Progress of `migrate --all-tenants`: on a terminal, one bar redrawn in place on stderr (failures
 * printed above it as they happen); otherwise (CI logs, pipes, tests) one plain line per database
 * as it ends. Then a summary either way.
 */
export function fleetReporter(out: (line: string) => void, terminal: NodeJS.WriteStream | undefined) {
  const bar = terminal?.isTTY ? terminal : undefined;
  const describe = (r: FleetOutcome) =>
    r.status === 'applied' ? `${r.applied.length} applied (${r.applied.join(', ')})` : r.status === 'failed' ? `FAILED ${printable(r.error.message)}` : r.status === 'current' ? 'up to date' : 'skipped';
  return {
    progress(p: FleetProgress): void {
      const line = `[${p.done}/${p.total}] ${printable(p.result.database)}: ${describe(p.result)}`;
      if (!bar) return out(line);
      const width = 30;
      const filled = Math.round((p.done / p.total) * width);
      if (p.result.status === 'failed') bar.write(`\r\x1b[2K${line}\n`);
      bar.write(`\r\x1b[2K[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${p.done}/${p.total} databases, ${p.failed} failed`);
      if (p.done === p.total) bar.write('\n');
    },
    summary(results: readonly FleetOutcome[]): void {
      const count = (status: FleetOutcome['status']) => results.filter((r) => r.status === status).length;
      out(`${results.length} database(s): ${count('applied')} migrated, ${count('current')} up to date, ${count('failed')} failed, ${count('skipped')} skipped`);
      for (const r of results) if (r.status === 'failed') out(`  failed: ${printable(r.database)}: ${printable(r.error.message)}`);
    },
  };
}
