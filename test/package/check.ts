/**
 * The package as users get it (`npm run test:package`, run by .ci/run): `npm pack` (which builds
 * dist/ through the `prepare` script), the tarball's contents checked, then installed into a fresh
 * project with the peer dependencies, test/package/consumer.ts compiled there under
 * `tsc --strict` WITHOUT skipLibCheck (our .d.ts files must type-check as users compile them), and
 * run against PostgreSQL (DATABASE_URL, or an embedded PostgreSQL when unset). The CLI's bin runs.
 *
 * Needs the npm registry (or its cache) for the consumer's dependencies; their versions are the
 * ones this repository develops against (package.json devDependencies).
 */
import { execFileSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedPostgres } from '../helpers/embedded.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const own = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>;
  devDependencies: Record<string, string>;
};
const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) =>
  execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

const work = await mkdtemp(join(tmpdir(), 'lbmt-package-'));
let stop: (() => Promise<void>) | undefined;
try {
  // 1. pack: `prepare` builds dist/ first.
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work], repo)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const paths = new Set(packed!.files.map((f) => f.path));
  const subpaths = Object.keys(own.exports).filter((key) => key !== './package.json');
  const wanted = ['package.json', 'README.md', 'dist/cli.js', 'sql/00001-tenants.sql', ...subpaths.flatMap((key) => {
    const entry = own.exports[key] as { types: string; default: string };
    return [entry.types, entry.default].map((p) => p.replace(/^\.\//, ''));
  })];
  const missing = wanted.filter((p) => !paths.has(p));
  if (missing.length) throw new Error(`the tarball lacks ${missing.join(', ')}`);
  const stray = [...paths].filter((p) => /^(src|test|bench|examples)\//.test(p));
  if (stray.length) throw new Error(`the tarball ships development files: ${stray.slice(0, 5).join(', ')}`);
  console.log(`packed ${packed!.filename}: ${paths.size} files, every subpath (${subpaths.join(', ')}) with its types`);

  // 2. a fresh project with the peer dependencies.
  const project = join(work, 'consumer');
  await run('mkdir', ['-p', project], work);
  await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'lbmt-consumer', private: true, type: 'module' }, null, 2));
  await writeFile(
    join(project, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', outDir: 'out', noUncheckedIndexedAccess: true, exactOptionalPropertyTypes: true, types: ['node'] }, files: ['consumer.ts'] }, null, 2),
  );
  const dev = own.devDependencies;
  const peers = ['koa', '@koa/router', '@koa/bodyparser', 'prom-client', 'kysely', '@opentelemetry/api', 'typescript', '@types/node', '@types/pg', '@types/koa'].map((name) => `${name}@${dev[name]}`);
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', join(work, packed!.filename), ...peers], project);
  await copyFile(join(repo, 'test/package/consumer.ts'), join(project, 'consumer.ts'));

  // 3. compile as a user does: strict, no skipLibCheck.
  run(join(project, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], project);
  console.log('consumer.ts compiles under tsc --strict without skipLibCheck');

  // 4. run it against PostgreSQL, and the bin.
  let databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    const server = await startEmbeddedPostgres();
    databaseUrl = server.url;
    stop = server.stop;
  }
  process.stdout.write(run(process.execPath, ['out/consumer.js'], project, { ...process.env, DATABASE_URL: databaseUrl }));
  const help = run(join(project, 'node_modules/.bin/linkbay-multitenant'), ['--help'], project);
  if (!/doctor/.test(help)) throw new Error(`the bin's --help does not list doctor:\n${help}`);
  console.log('the linkbay-multitenant bin runs');
} finally {
  await stop?.();
  await rm(work, { recursive: true, force: true });
}
