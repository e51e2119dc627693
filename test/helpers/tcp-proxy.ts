import { connect, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP relay in front of a PostgreSQL server, for tests of what a client does when its connection
 * is cut and when reconnecting hangs (a real network path, not a mock): `cut()` closes every relayed
 * connection; while `hold()` is on, new connections are accepted but not relayed, so a client's
 * connect waits, until `release()`.
 */
export async function startTcpProxy(target: string) {
  const { hostname, port } = new URL(target);
  const open = new Set<Socket>();
  const held: Socket[] = [];
  let holding = false;
  let accepted = 0;
  const relay = (client: Socket) => {
    const server = connect(Number(port || 5432), hostname);
    for (const socket of [client, server]) {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      socket.on('error', () => undefined); // a cut connection: the other side is destroyed below
    }
    client.pipe(server).pipe(client);
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  };
  const proxy = createServer((client) => {
    accepted += 1;
    if (holding) {
      client.on('error', () => undefined);
      held.push(client);
    } else relay(client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxyPort = (proxy.address() as AddressInfo).port;
  const url = (connectionString: string) => Object.assign(new URL(connectionString), { hostname: '127.0.0.1', port: String(proxyPort) }).toString();
  return {
    /** `connectionString` through the relay. */
    url,
    /** Connections accepted so far (relayed or held). */
    get accepted() {
      return accepted;
    },
    /** Connections accepted while holding and not yet relayed. */
    get waiting() {
      return held.length;
    },
    hold() {
      holding = true;
    },
    release() {
      holding = false;
      for (const client of held.splice(0)) relay(client);
    },
    cut() {
      for (const socket of open) socket.destroy();
    },
    async close() {
      holding = false;
      for (const socket of [...open, ...held.splice(0)]) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}
