/** Database URLs shown without their secrets, in logs, errors and APIs. */

// Query parameters node-postgres reads into the connection config that carry secrets
// (`?password=` is honoured like the password of the authority part).
const SECRET_PARAMETER = /pass|secret|token|key/i;

/** A connection URL with its password (and secret query parameters) replaced by `***`, safe for logs and APIs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    for (const name of [...new Set(parsed.searchParams.keys())]) {
      if (SECRET_PARAMETER.test(name)) parsed.searchParams.set(name, '***');
    }
    return parsed.toString();
  } catch {
    return '<unparseable url>';
  }
}
