import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TestFn } from 'ava';
import pg from 'pg';

/**
 * A private PgBouncer in TRANSACTION pooling mode in front of a PostgreSQL server, for tests.
 *
 * PgBouncer is a system binary (Debian's `pgbouncer` package, /usr/sbin/pgbouncer); .ci/run
 * installs it. `findPgBouncer()` says whether it is there, so a test can skip visibly outside CI.
 */

export interface PgBouncerUser {
  readonly name: string;
  /** Plain text: PgBouncer needs it to answer the server's SCRAM challenge (and checks clients with it). */
  readonly password: string;
}

export interface PgBouncerOptions {
  /** Any URL of the upstream server: only its host and port are used; every database is routed through. */
  readonly upstreamUrl: string;
  readonly users: readonly PgBouncerUser[];
  /** Server connections per (database, user) pair. Default 2. */
  readonly poolSize?: number;
  /** Client connections PgBouncer accepts. Default 200. */
  readonly maxClientConn?: number;
  /** The binary to run. Default: `findPgBouncer()`. */
  readonly binary?: string;
  /**
   * `max_prepared_statements` (PgBouncer >= 1.21): protocol-level prepared statements routed in
   * transaction mode. Default: not written (PgBouncer's own default: 0, off, before 1.22; 200 since;
   * 1.18 does not know the setting).
   */
  readonly maxPreparedStatements?: number;
}

export interface PgBouncer {
  readonly port: number;
  readonly version: string;
  /** A URL through PgBouncer for one of its users and a database of the upstream server. */
  url(user: string, password: string, database: string): string;
  /** PgBouncer's server connections (its admin console's SHOW SERVERS), with their backend pids. */
  servers(): Promise<PgBouncerServer[]>;
  stop(): Promise<void>;
}

export interface PgBouncerServer {
  readonly database: string;
  readonly user: string;
  readonly state: string;
  /** pg_backend_pid() of the server connection. */
  readonly remotePid: number;
}

const SEARCH_DIRS = ['/usr/sbin', '/usr/local/sbin', '/usr/bin', '/usr/local/bin'];

/**
 * The system's pgbouncer binary (on PATH or in the sbin directories), or undefined.
 */
export function findPgBouncer(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SEARCH_DIRS];
  return dirs.map((dir) => join(dir, 'pgbouncer')).find(isExecutable);
}

/** A PgBouncer build found on this machine. */
export interface PgBouncerBinary {
  readonly path: string;
  readonly version: string;
  /** >= 1.21: routes protocol-level prepared statements in transaction mode (max_prepared_statements). */
  readonly routesPreparedStatements: boolean;
}

/** Where the 1.25 build of `../shared/pgbouncer/install.sh` goes. */
const OPT_BUILDS = ['/opt/pgbouncer-1.25.2/bin/pgbouncer'];

/**
 * Every PgBouncer build to test against, oldest first, one per version: the system's (Debian 12
 * ships 1.18) and the 1.25 build in /opt. PGBOUNCER_BIN (a list separated by the path delimiter),
 * when set, is the only place looked at.
 */
export function findPgBouncers(): PgBouncerBinary[] {
  const forced = process.env.PGBOUNCER_BIN;
  const candidates = forced ? forced.split(delimiter).filter(Boolean) : [findPgBouncer(), ...OPT_BUILDS];
  const byVersion = new Map<string, PgBouncerBinary>();
  for (const path of candidates) {
    if (!path || !isExecutable(path)) continue;
    const version = pgBouncerVersion(path);
    if (!byVersion.has(version)) byVersion.set(version, { path, version, routesPreparedStatements: atLeast(version, [1, 21]) });
  }
  return [...byVersion.values()].sort((a, b) => (atLeast(a.version, versionParts(b.version)) ? 1 : -1));
}

function versionParts(version: string): number[] {
  return version.split(/[.-]/).map((part) => Number.parseInt(part, 10) || 0);
}

function atLeast(version: string, wanted: readonly number[]): boolean {
  const have = versionParts(version);
  for (let i = 0; i < wanted.length; i += 1) {
    if ((have[i] ?? 0) !== wanted[i]) return (have[i] ?? 0) > wanted[i]!;
  }
  return true;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `max_prepared_statements` the tests give a PgBouncer that routes prepared statements. */
export const MAX_PREPARED_STATEMENTS = 200;

/**
 * The builds a PgBouncer test file runs against. Both kinds are wanted: one that cannot route
 * prepared statements (Debian's 1.18) and one that can (>= 1.21). In CI a missing kind is a failed
 * test (.ci/run installs both); elsewhere it is skipped with a warning.
 */
export function pgBouncersUnderTest(test: TestFn<any>, file: string): PgBouncerBinary[] {
  const found = findPgBouncers();
  const inCi = Boolean(process.env.CI) && process.env.CI !== 'false' && process.env.CI !== '0';
  const kinds = [
    { routes: false, what: 'a PgBouncer before 1.21 (Debian: apt-get install -y pgbouncer)' },
    { routes: true, what: 'a PgBouncer 1.21+ (bash ../shared/pgbouncer/install.sh builds 1.25.2 into /opt)' },
  ];
  for (const kind of kinds) {
    if (found.some((b) => b.routesPreparedStatements === kind.routes)) continue;
    if (inCi) {
      test(`${file}: ${kind.what} is installed in CI, where .ci/run installs it`, (t) => {
        t.fail(`not found (looked on PATH, in /usr/sbin and in ${OPT_BUILDS.join(', ')}; PGBOUNCER_BIN overrides)`);
      });
    } else {
      console.warn(`${file}: SKIPPED for ${kind.what}: not installed`);
    }
  }
  return found;
}

/** `PgBouncer 1.18.0` → `1.18.0`. */
export function pgBouncerVersion(binary: string): string {
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  const match = /PgBouncer\s+(\S+)/i.exec(`${out.stdout}${out.stderr}`);
  if (!match) throw new Error(`cannot read the version of ${binary}: ${out.stderr || out.stdout}`);
  return match[1]!;
}

/**
 * Starts PgBouncer on a free port of 127.0.0.1 with `pool_mode = transaction`, a small pool per
 * (database, user) so many clients share few server connections, and resolves once it accepts
 * connections. As root it runs as the `postgres` system user (`-u postgres`): PgBouncer refuses root.
 */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const binary = options.binary ?? findPgBouncer();
  if (!binary) throw new Error('pgbouncer is not installed (apt-get install -y pgbouncer, or set PGBOUNCER_BIN)');
  const version = pgBouncerVersion(binary);
  const upstream = new URL(options.upstreamUrl);
  const upstreamHost = upstream.hostname || '127.0.0.1';
  const upstreamPort = Number(upstream.port || 5432);
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'lbmt-pgbouncer-'));
  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
  const userlist = options.users.map((u) => `${quote(u.name)} ${quote(u.password)}`).join('\n') + '\n';
  const ini = [
    '[databases]',
    // Every database name routes to the same-named database upstream, as the client's user.
    `* = host=${upstreamHost} port=${upstreamPort}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'pidfile =',
    'logfile =',
    `auth_type = scram-sha-256`,
    `auth_file = ${join(dir, 'userlist.txt')}`,
    'pool_mode = transaction',
    ...(options.maxPreparedStatements !== undefined ? [`max_prepared_statements = ${options.maxPreparedStatements}`] : []),
    `default_pool_size = ${options.poolSize ?? 2}`,
    'min_pool_size = 0',
    'reserve_pool_size = 0',
    `max_client_conn = ${options.maxClientConn ?? 200}`,
    'max_db_connections = 0',
    'ignore_startup_parameters = extra_float_digits,options',
    // Transaction mode: no reset between clients (the default); said here because it is the point.
    'server_reset_query_always = 0',
    'server_check_delay = 30',
    // The users may open the admin console (database `pgbouncer`), for SHOW SERVERS.
    `admin_users = ${options.users.map((u) => u.name).join(', ')}`,
    'log_connections = 0',
    'log_disconnections = 0',
    'log_pooler_errors = 1',
    'stats_period = 3600',
    '',
  ].join('\n');
  await writeFile(join(dir, 'userlist.txt'), userlist, { mode: 0o644 });
  await writeFile(join(dir, 'pgbouncer.ini'), ini, { mode: 0o644 });
  await chmod(dir, 0o755); // readable by the `postgres` user PgBouncer switches to

  const args = [join(dir, 'pgbouncer.ini')];
  if (process.getuid?.() === 0) args.unshift('-u', 'postgres');
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  try {
    await waitForPort(port, child, exited, () => log);
  } catch (error) {
    await terminate(child, exited);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  let stopped: Promise<void> | undefined;
  const url = (user: string, password: string, database: string) =>
    `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return {
    port,
    version,
    url,
    servers: async () => {
      const admin = options.users[0];
      if (!admin) throw new Error('no user to open the admin console with');
      const console_ = new pg.Client({ connectionString: url(admin.name, admin.password, 'pgbouncer') });
      await console_.connect();
      try {
        const { rows } = await console_.query('SHOW SERVERS');
        return rows.map((r) => ({ database: r.database, user: r.user, state: r.state, remotePid: Number(r.remote_pid) }));
      } finally {
        await console_.end();
      }
    },
    stop: () =>
      (stopped ??= (async () => {
        await terminate(child, exited);
        await rm(dir, { recursive: true, force: true });
      })()),
  };
}

async function terminate(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM'); // immediate shutdown
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

async function waitForPort(port: number, child: ChildProcess, exited: Promise<number | null>, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  let gone = false;
  void exited.then(() => (gone = true));
  while (Date.now() < deadline) {
    if (gone || child.exitCode !== null) {
      throw new Error(`pgbouncer exited with code ${child.exitCode} before accepting connections:\n${log()}`);
    }
    if (await canConnect(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`pgbouncer did not accept connections on 127.0.0.1:${port} within 15 s:\n${log()}`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
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
