#!/usr/bin/env bash
# PITFALLS 26: as root, a fresh clone under a directory the `postgres` user cannot enter (mktemp -d
# is 0700, as /root/app in a container) must still run `npm test` and `npm start` on the embedded
# PostgreSQL. Clones this checkout there, installs, runs one test file, starts the example app and
# asks it for a page, then removes everything. Only meaningful as root; skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "=== not root: private-checkout check skipped ==="; exit 0; fi
private="$(mktemp -d)"
cleanup() {
  pkill -f "$private/app/node_modules" >/dev/null 2>&1 || true
  # the data directory the example kept outside the checkout (see test/helpers/embedded.ts)
  elsewhere="$(sed -n 's/.*keeping the data in \([^ ]*\) instead.*/\1/p' "$private/start.log" 2>/dev/null | head -1)"
  [ -n "$elsewhere" ] && rm -rf "$elsewhere"
  rm -rf "$private"
}
trap cleanup EXIT
git clone -q . "$private/app"
cd "$private/app"
npm ci --no-audit --no-fund >/dev/null
env -u DATABASE_URL npm test -- test/transaction.test.ts
port=$((30000 + RANDOM % 20000))
env -u DATABASE_URL PORT="$port" EMBEDDED_PG_PORT=$((port + 1)) npm start >"$private/start.log" 2>&1 &
app=$!
for _ in $(seq 1 90); do
  grep -q "listening on" "$private/start.log" && break
  kill -0 "$app" 2>/dev/null || { cat "$private/start.log"; echo "npm start exited"; exit 1; }
  sleep 1
done
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/orders")"
kill "$app"; wait "$app" || true
cat "$private/start.log" | head -5
[ "$code" = 400 ] || { echo "GET /api/orders without a tenant answered $code, expected 400"; exit 1; }
echo "=== npm test and npm start work from $private (mode $(stat -c %a "$private")) ==="
