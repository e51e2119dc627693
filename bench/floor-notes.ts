/**
 * What bench/floor-profile.ts found, rendered under the peers tables. Hand-written from its output
 * (the figures are of the run named here, not of the run above): update them together.
 */
export const FLOOR_PROFILE_NOTES: readonly string[] = [
  '### Where the floor goes',
  '',
  '`bench/floor-profile.ts` (PostgreSQL 15, one connection, one caller, `SELECT 1`, 7 rounds of 3,000, medians; run',
  '2026-12-03 08:08 UTC, load average ~10 on the 2 cores) took `tenantQuery` apart:',
  '',
  '| step | µs/op | adds |',
  '|---|---:|---:|',
  '| pg named `SELECT 1` through the pool | 25.5 | |',
  '| the library\'s batch (src/pipeline.ts), no prelude, held client | 25.0 | the Submittable itself: nothing measurable |',
  '| the batch with the tenant\'s `set_config`, held client | 30.5 | +5.5: a second statement (Bind/Execute/CommandComplete, executor start and end) in the same round trip |',
  '| `tenantQuery` through the pool | 40.1 | +9.6: resolve the id, plan class, lease (connect, watch, release, event), promise layers |',
  '',
  'Under V8\'s CPU profiler (node:inspector around 15,000 `tenantQuery(\'SELECT 1\')` only) the process spent, per',
  'operation: 25 µs in `writev` (the one syscall that sends the batch; on loopback it does the receiving side\'s TCP',
  'work and wakes the backend), 7 µs idle (waiting for the server), 3.7 µs in the garbage collector, 3.6 µs in V8\'s',
  'promise dispatch, 2.3 µs in pg (of it 1.7 µs `cloneQueryConfig`, the `pg.Query` every statement gets, pool.query',
  'too), 0.5 µs in pg-protocol, and about 3.3 µs in the library\'s own code: src/pipeline.ts 1.7 (statement naming and',
  'the LRU of prepared statements 0.9), src/client-hygiene.ts 0.6 (the error listener of the lease), src/lease.ts 0.5,',
  'src/statement-names.ts 0.3, src/tenant-id.ts 0.15. So the library\'s JavaScript is ~10% of the floor; the rest of',
  'the gap to a bare named statement is the second statement on the server and the allocations (GC) of the promise',
  'layers. What was trimmed: `tenantQuery` no longer awaits a plan class it already knows (one microtask turn), and',
  'the `set_config` texts are built once per variant instead of per call. The ≤ 1.1× target is below what a separate',
  '`set_config` statement allows here: the batch with it alone is ~1.2× a bare named statement on a held client.',
  'A smaller floor needs the setting to ride in the statement itself (not done: it changes what is sent).',
  '',
];
