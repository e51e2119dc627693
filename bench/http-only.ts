/** `tsx bench/http-only.ts`: only the HTTP measurement (small data set), for iterating on it. */
import { renderHttp, runHttp } from './http.js';
import { setupBench } from './setup.js';

const env = await setupBench({ rows: 100_000, tenants: 200, bigShare: 0.3 }, (line) => console.log(line));
try {
  console.log(renderHttp(await runHttp(env, { rounds: 3, durationSeconds: 3, connections: 32 })));
} finally {
  await env.close();
}
