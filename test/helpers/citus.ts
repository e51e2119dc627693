import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, chownSync, appendFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

/**
 * A real Citus cluster for the tests: a coordinator and two workers, each a PostgreSQL 15 started
 * with initdb + pg_ctl as the `postgres` user on a free loopback port, `shared_preload_libraries =
 * 'citus'`. Databases made by `createDatabase` have the extension on every node, the coordinator
 * registered and both workers added. `stop()` stops the servers and removes their data.
 *
 * LBMT_CITUS=require (CI): a missing Citus fails the tests. LBMT_CITUS=skip: always skipped.
 * Unset: they run when Citus is installed, and are skipped with a message when it is not.
 */

const execFileP = promisify(execFile);
export const PG_BIN = process.env.LBMT_CITUS_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const CITUS_SO = process.env.LBMT_CITUS_SO ?? '/usr/lib/postgresql/15/lib/citus.so';

/** Why the Citus tests cannot run here, or undefined when they can. */
export function citusUnavailable(): string | undefined {
  if (process.env.LBMT_CITUS === 'skip') return 'LBMT_CITUS=skip';
  if (!existsSync(join(PG_BIN, 'pg_ctl'))) return `no PostgreSQL binaries in ${PG_BIN}`;
  if (!existsSync(CITUS_SO)) return `Citus is not installed (${CITUS_SO} missing; bash ../shared/citus/install.sh installs it)`;
  if (process.getuid?.() !== 0) return 'the Citus cluster is started as the postgres user, which needs root (runuser)';
  return undefined;
}

/** `require`: a missing Citus is a failure. Anything else: skip. */
export function citusRequired(): boolean {
  return process.env.LBMT_CITUS === 'require';
}

export interface CitusNode {
  readonly port: number;
  readonly dir: string;
}

export interface CitusCluster {
  readonly coordinator: CitusNode;
  readonly workers: readonly CitusNode[];
  /** Superuser URL of `database` on a node (default: the coordinator). */
  url(database: string, node?: CitusNode): string;
  /** A new database with citus on every node, the coordinator host set and both workers added. */
  createDatabase(name: string): Promise<void>;
  dropDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const asPostgres = (command: string, args: string[]) => execFileP('runuser', ['-u', 'postgres', '--', join(PG_BIN, command), ...args], { maxBuffer: 1 << 24 });

async function startNode(root: string, name: string): Promise<CitusNode> {
  const dir = join(root, name);
  await asPostgres('initdb', ['-D', dir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
  const port = await freePort();
  appendFileSync(
    join(dir, 'postgresql.conf'),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dir}'`,
      `shared_preload_libraries = 'citus'`,
      `max_connections = 200`,
      `max_prepared_transactions = 100`,
      `wal_level = logical`,
      `fsync = off`,
      `synchronous_commit = off`,
      `full_page_writes = off`,
      `citus.shard_count = 8`,
      `citus.stat_tenants_track = 'all'`,
      // A day: the tests' counts do not straddle a period boundary (the last one is still summed).
      `citus.stat_tenants_period = 86400`,
      '',
    ].join('\n'),
  );
  await asPostgres('pg_ctl', ['-D', dir, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  return { port, dir };
}

async function run(url: string, statements: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql);
  } finally {
    await client.end();
  }
}

export async function startCitusCluster(): Promise<CitusCluster> {
  const root = mkdtempSync(join(tmpdir(), 'lbmt-citus-'));
  chownSync(root, ...(await postgresIds()));
  const nodes: CitusNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => asPostgres('pg_ctl', ['-D', n.dir, '-m', 'immediate', '-w', 'stop']).catch(() => undefined)));
    rmSync(root, { recursive: true, force: true });
  };
  try {
    // One at a time: initdb is CPU-bound and the machine is shared.
    for (const name of ['coordinator', 'worker1', 'worker2']) nodes.push(await startNode(root, name));
  } catch (error) {
    await stop();
    throw error;
  }
  const [coordinator, ...workers] = nodes as [CitusNode, ...CitusNode[]];
  const url = (database: string, node: CitusNode = coordinator) => `postgres://postgres@127.0.0.1:${node.port}/${database}`;
  // One database set up at a time: concurrent citus_add_node calls (tests of one file run
  // concurrently) failed now and then with "failure on connection marked as essential".
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = queue.then(fn, fn);
    queue = next.catch(() => undefined);
    return next;
  };
  return {
    coordinator,
    workers,
    url,
    createDatabase: (name) =>
      serial(async () => {
        for (const node of nodes) {
          await run(url('postgres', node), [`CREATE DATABASE ${name}`]);
          await run(url(name, node), ['CREATE EXTENSION citus']);
        }
        await run(url(name), [
          `SELECT citus_set_coordinator_host('127.0.0.1', ${coordinator.port})`,
          ...workers.map((w) => `SELECT citus_add_node('127.0.0.1', ${w.port})`),
        ]);
      }),
    async dropDatabase(name) {
      for (const node of nodes) await run(url('postgres', node), [`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]).catch(() => undefined);
    },
    stop,
  };
}

async function postgresIds(): Promise<[number, number]> {
  const [{ stdout: uid }, { stdout: gid }] = await Promise.all([execFileP('id', ['-u', 'postgres']), execFileP('id', ['-g', 'postgres'])]);
  return [Number(uid.trim()), Number(gid.trim())];
}
