/**
 * Importing the core loads no WebAssembly: the SQL guard (libpg-query, a ~1.7 MB WASM parser) is
 * its own subpath. Checked in a fresh process whose WebAssembly entry points count their calls, so
 * what another test file loaded cannot hide it; the guard's import proves the count works.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const src = (path: string) => fileURLToPath(new URL(`../src/${path}`, import.meta.url));

/** Runs `body` (an async function's text) in a new Node process with WebAssembly counted; returns its JSON. */
function inFreshProcess(imports: readonly string[], after = ''): { wasm: number; loaded: string[]; zod: boolean } {
  const script = `
    let wasm = 0;
    // Node's own HTTP parser and tsx's lexer use WebAssembly too: count what the parser package causes.
    const count = () => { if (String(new Error().stack).includes('libpg-query')) wasm += 1; };
    for (const name of ['compile', 'instantiate', 'compileStreaming', 'instantiateStreaming', 'validate']) {
      const original = WebAssembly[name];
      if (typeof original === 'function') WebAssembly[name] = function (...args) { count(); return original.apply(this, args); };
    }
    const OriginalModule = WebAssembly.Module;
    WebAssembly.Module = new Proxy(OriginalModule, { construct(target, args) { count(); return new target(...args); } });
    for (const path of ${JSON.stringify(imports)}) await import(path);
    ${after}
    const { createRequire } = await import('node:module');
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((p) => p.includes('libpg-query'));
    // zod is ESM (not in require's cache); its core sets this global when it is evaluated.
    const zod = globalThis.__zod_globalConfig !== undefined;
    console.log(JSON.stringify({ wasm, loaded, zod }));
  `;
  const out = execFileSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!);
}

test('importing the core loads neither libpg-query nor zod (loaded on the first validation); the probe sees zod once validation runs', (t) => {
  t.like(inFreshProcess([src('index.ts')]), { wasm: 0, loaded: [], zod: false });
  const validated = inFreshProcess([src('index.ts')], `
    const { TenantAdminService } = await import(${JSON.stringify(src('index.ts'))});
    const admin = new TenantAdminService({ connect: async () => { throw new Error('not reached'); } });
    await admin.createTenant({ slug: 'Not A Slug', name: 'x' }).catch(() => undefined);
  `);
  t.true(validated.zod, 'zod was loaded by the first validation');
});

test('importing linkbay-multitenant and its koa, metrics and testing subpaths loads no WebAssembly and not libpg-query', (t) => {
  const seen = inFreshProcess([src('index.ts'), src('koa/index.ts'), src('metrics/index.ts'), src('testing/index.ts')]);
  t.is(seen.wasm, 0, 'no WebAssembly compiled');
  t.deepEqual(seen.loaded, [], 'libpg-query not loaded');
});

test('the guard subpath does load the parser: the probe above can see it', (t) => {
  const seen = inFreshProcess([src('guard/index.ts')], `
    const { loadModule, parseSync } = await import('libpg-query');
    await loadModule();
    parseSync('SELECT 1');
  `);
  t.true(seen.loaded.length > 0, 'libpg-query was loaded');
  t.true(seen.wasm > 0, 'its WebAssembly was compiled');
});
