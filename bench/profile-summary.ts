/**
 * Summarises a `node --cpu-prof` profile: self time by where the code lives, and the top functions,
 * per operation when the number of operations is given (bench/floor-profile.ts).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, operations] = [process.argv[2]!, Number(process.argv[3] ?? 0)];
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

function area(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native / V8 builtins)';
  if (url.includes('/src/')) return `library: ${url.slice(url.indexOf('/src/') + 1)}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `package: ${pkg[1]}`;
  if (url.startsWith('node:')) return `node: ${url.slice(5).replace(/^internal\//, '').split('/')[0]}`;
  return url;
}

const areas = new Map<string, number>();
const functions = new Map<string, number>();
let total = 0;
for (const [id, us] of self) {
  const node = byId.get(id)!;
  const { url, functionName, lineNumber } = node.callFrame;
  total += us;
  const a = area(url, functionName);
  areas.set(a, (areas.get(a) ?? 0) + us);
  const key = `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
  functions.set(key, (functions.get(key) ?? 0) + us);
}
const per = (us: number) => (operations ? `${(us / operations).toFixed(2)} µs/op` : '');
const pct = (us: number) => `${((100 * us) / total).toFixed(1)}%`;
console.log(`total sampled ${(total / 1e6).toFixed(2)} s ${per(total)}`);
for (const [a, us] of [...areas].sort((x, y) => y[1] - x[1]).slice(0, 20)) console.log(`${pct(us).padStart(6)} ${per(us).padStart(14)}  ${a}`);
console.log('\ntop functions (self):');
for (const [fn, us] of [...functions].sort((x, y) => y[1] - x[1]).slice(0, 30)) console.log(`${pct(us).padStart(6)} ${per(us).padStart(14)}  ${fn}`);
