#!/usr/bin/env node
/**
 * linkbay-multitenant generate | migrate | doctor | export | import | move
 *
 * Exit codes: 0 success (doctor: nothing breaks isolation), 1 failure (doctor: something does),
 * 2 bad usage (unknown command or option, missing or invalid config).
 */
import { realpathSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { defineTenancy, type TenancyConfig } from './config.js';
import { TenancyConfigError } from './errors.js';
import { migrate } from './migrations.js';
import { migrateAllTenants, type FleetProgress } from './fleet-migrations.js';
import { fleetReporter } from './cli-progress.js';
import { generateRlsSql } from './policies.js';
import { checkPosture, formatPostureReport } from './posture/index.js';
import { formatPostureJunit } from './posture/junit.js';
import { printableJson } from './printable.js';
import { CliUsageError, exportCommand, importCommand, moveCommand, type CliIo } from './cli-portability.js';
import { Progress } from './progress.js';

const USAGE = `Usage:
  linkbay-multitenant generate --config multitenant.config.json --out <dir> [--start <n>] [--only setup|tables] [--no-registry] [--overwrite]
  linkbay-multitenant migrate  --database-url <url> --dir <dir> [--all-tenants [--concurrency <n>] [--canary <n>] [--stop-on-failure] [--server <host:port>]...]
  linkbay-multitenant doctor   --database-url <url> --config multitenant.config.json [--json | --format text|json|junit] [--perf] [--probe]
  linkbay-multitenant export   --database-url <app-role url> --config <file> --tenant <id> [--out <file.ndjson>]
  linkbay-multitenant import   --database-url <target owner-role url> --config <file> --tenant <id> [--in <file.ndjson>] [--mode insert|upsert] [--dry-run]
  linkbay-multitenant move     --database-url <admin-role url> --app-url <app-role url> --config <file> --tenant <id>
                               --target-url <target app-role url|shared> --target-owner-url <target owner-role url> [--copy] [--target-name <name>] [--resume]

DATABASE_URL is used when --database-url is not given.
migrate --all-tenants: the shared database, then every tenant database in its registry, each once,
  reached with the host, port and database of the tenant's database_url and the user, password and
  query parameters of --database-url (registry URLs are app-role URLs, which cannot run DDL);
  --concurrency databases at once (4), the first --canary of them before the others (which are
  skipped when a canary fails), --stop-on-failure to start no other database after a failure.
  The credentials go only to --database-url's server and each --server given (a registry URL on
  another server is reported as failed, not connected to).
  Exit code 1 when any database failed or was skipped; a re-run applies only what is missing.
Exit codes: 0 ok, 1 failure (doctor: a finding breaks isolation), 2 bad usage.`;

class UsageError extends Error {}

export async function main(argv: string[], out: (s: string) => void = console.log, err: (s: string) => void = console.error): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'generate':
        return await generate(rest, out);
      case 'migrate':
        return await runMigrate(rest, out);
      case 'doctor':
        return await doctor(rest, out);
      case 'export':
        return await exportCommand(rest, cliIo(out, err));
      case 'import':
        return await importCommand(rest, cliIo(out, err));
      case 'move':
        return await moveCommand(rest, cliIo(out, err));
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        out(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError || error instanceof CliUsageError || error instanceof TenancyConfigError || isParseArgsError(error)) {
      err(`linkbay-multitenant: ${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    err(`linkbay-multitenant: ${(error as Error).message ?? String(error)}`);
    return 1;
  }
}

async function generate(args: string[], out: (s: string) => void): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      out: { type: 'string' },
      start: { type: 'string' },
      only: { type: 'string' },
      'no-registry': { type: 'boolean' },
      overwrite: { type: 'boolean' },
    },
    strict: true,
  });
  if (!values.config || !values.out) throw new UsageError('generate needs --config and --out');
  const config = await loadConfig(values.config);
  const startIndex = values.start === undefined ? 1 : Number(values.start);
  if (!Number.isInteger(startIndex) || startIndex < 1) throw new UsageError('--start must be a positive integer');
  if (values.only !== undefined && values.only !== 'setup' && values.only !== 'tables') {
    throw new UsageError('--only must be "setup" or "tables"');
  }
  // Files already in --out keep their numbers; new ones (a table added, a library upgrade) follow them.
  const existing: string[] = await readdir(values.out).catch((error: NodeJS.ErrnoException): string[] => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  const files = generateRlsSql(config, { startIndex, includeRegistry: !values['no-registry'], only: values.only, existing });
  await mkdir(values.out, { recursive: true });
  for (const file of files) {
    const path = join(values.out, file.name);
    if (existing.includes(file.name) && !values.overwrite) {
      // An applied migration must keep its bytes (@databases/pg-migrations refuses edited files).
      if ((await readFile(path, 'utf8')) !== file.sql) out(`kept ${path}: it differs from what this version generates (--overwrite replaces it; for a database that applied it, add a new migration instead)`);
      continue;
    }
    await writeFile(path, file.sql);
    out(`wrote ${path}`);
  }
  return 0;
}

async function runMigrate(args: string[], out: (s: string) => void): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'database-url': { type: 'string' },
      dir: { type: 'string' },
      'all-tenants': { type: 'boolean' },
      concurrency: { type: 'string' },
      canary: { type: 'string' },
      'stop-on-failure': { type: 'boolean' },
      server: { type: 'string', multiple: true },
    },
    strict: true,
  });
  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL;
  if (!databaseUrl || !values.dir) throw new UsageError('migrate needs --database-url (or DATABASE_URL) and --dir');
  const directory = resolve(values.dir);
  if (values['all-tenants']) {
    const integer = (name: string, value: string | undefined, min: number) => {
      if (value === undefined) return undefined;
      if (!/^\d{1,6}$/.test(value) || Number(value) < min) throw new UsageError(`--${name} must be an integer of at least ${min}`);
      return Number(value);
    };
    const concurrency = integer('concurrency', values.concurrency, 1);
    const canary = integer('canary', values.canary, 0);
    const reporter = fleetReporter(out, out === console.log ? process.stderr : undefined);
    const { results, ok } = await migrateAllTenants({
      databaseUrl,
      directory,
      ...(concurrency ? { concurrency } : {}),
      ...(canary ? { canary } : {}),
      stopOnFailure: values['stop-on-failure'] === true,
      ...(values.server ? { servers: values.server } : {}),
      onProgress: (progress: FleetProgress) => reporter.progress(progress),
    });
    reporter.summary(results);
    return ok ? 0 : 1;
  } else if (values.concurrency !== undefined || values.canary !== undefined || values['stop-on-failure'] || values.server) {
    throw new UsageError('--concurrency, --canary, --stop-on-failure and --server go with --all-tenants');
  }
  const result = await migrate({ databaseUrl, directory, onApplied: (name) => out(`applied ${name}`) });
  out(`${result.applied.length} migration(s) applied`);
  return 0;
}

async function doctor(args: string[], out: (s: string) => void): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'database-url': { type: 'string' },
      config: { type: 'string' },
      json: { type: 'boolean' },
      perf: { type: 'boolean' },
      probe: { type: 'boolean' },
      format: { type: 'string' },
      'runtime-role': { type: 'string' },
    },
    strict: true,
  });
  const databaseUrl = values['database-url'] ?? process.env.DATABASE_URL;
  if (!databaseUrl || !values.config) throw new UsageError('doctor needs --database-url (or DATABASE_URL) and --config');
  if (values.format !== undefined && !['text', 'json', 'junit'].includes(values.format)) throw new UsageError('--format must be text, json or junit');
  const config = await loadConfig(values.config);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  try {
    const report = await checkPosture(pool, config, {
      ...(values['runtime-role'] ? { runtimeRole: values['runtime-role'] } : {}),
      performance: values.perf === true,
      probe: values.probe === true,
    });
    const format = values.format ?? (values.json ? 'json' : 'text');
    out(format === 'json' ? printableJson(report, 2) : format === 'junit' ? formatPostureJunit(report) : formatPostureReport(report));
    return report.ok ? 0 : 1;
  } finally {
    await pool.end();
  }
}

/** Streams and progress of the data commands: progress and step lines go to `err` (stderr), data to stdout. */
function cliIo(out: (s: string) => void, err: (s: string) => void): CliIo {
  const toStderr = err === console.error ? (text: string) => void process.stderr.write(text) : (text: string) => err(text.replace(/\n$/, ''));
  return { out, progress: new Progress(toStderr, err === console.error && process.stderr.isTTY === true), stdout: process.stdout, stdin: process.stdin, loadConfig };
}

/** Reads a JSON config, or a .js/.mjs/.ts module whose default export is the config object. */
export async function loadConfig(path: string): Promise<TenancyConfig> {
  const full = resolve(path);
  let input: unknown;
  if (/\.(c|m)?(j|t)s$/.test(full)) {
    const module = (await import(pathToFileURL(full).href)) as { default?: unknown };
    input = module.default ?? module;
  } else {
    let text: string;
    try {
      text = await readFile(full, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read config ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    try {
      input = JSON.parse(text);
    } catch (error) {
      throw new UsageError(`config ${path} is not valid JSON: ${(error as Error).message}`);
    }
  }
  return defineTenancy(input as Parameters<typeof defineTenancy>[0]);
}

function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

// Run when executed directly (the bin, through npm's symlink, or `tsx src/cli.ts`), not when imported.
const invoked = process.argv[1] ? pathToFileURL(realpathOrSelf(process.argv[1])).href : '';
if (import.meta.url === invoked) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}
