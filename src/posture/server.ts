/**
 * What the doctor knows about PostgreSQL releases: which minor releases fixed the row-security
 * CVEs of PITFALLS 20, and when each major went out of support.
 */
import type { Finding } from './index.js';

/**
 * Row-security CVEs and the first minor release of each affected major that fixes them. Majors
 * not listed and newer than all listed ones were released with the fix; older ones never got it.
 * - CVE-2023-2455 (policies disregard user ID changes after inlining): fixed in 15.3, 14.8, 13.11,
 *   12.15, 11.20 (2023-05-11). https://www.postgresql.org/support/security/CVE-2023-2455/
 * - CVE-2024-10976 (policies below subqueries disregard user ID changes) and CVE-2024-10978
 *   (SET ROLE / SET SESSION AUTHORIZATION reset to the wrong user id): fixed in 17.1, 16.5, 15.9,
 *   14.14, 13.17, 12.21 (2024-11-14; release notes of 16.5: "Ensure cached plans are marked as
 *   dependent on the calling role when RLS applies to a non-top-level table reference ...
 *   (CVE-2024-10976)"). https://www.postgresql.org/support/security/CVE-2024-10976/ and
 *   .../CVE-2024-10978/. The releases a week later (17.2, 16.6, 15.10, 14.15, 13.18, 12.22) only
 *   repaired a regression of those; the minimum for the CVEs is the first set.
 * - CVE-2025-8713 (optimizer statistics: a leaky operator reads histogram and most-common values
 *   that a row security policy hides, in partitioning and inheritance hierarchies): fixed in 17.6,
 *   16.10, 15.14, 14.19, 13.22 (2025-08-14). https://www.postgresql.org/support/security/CVE-2025-8713/
 */
const WRONG_POLICIES = "row level security can apply the wrong role's policies";
const RLS_CVES: ReadonlyArray<{ cve: string; effect: string; fixed: Readonly<Record<number, number>> }> = [
  { cve: 'CVE-2023-2455', effect: WRONG_POLICIES, fixed: { 11: 20, 12: 15, 13: 11, 14: 8, 15: 3 } },
  { cve: 'CVE-2024-10976', effect: WRONG_POLICIES, fixed: { 12: 21, 13: 17, 14: 14, 15: 9, 16: 5, 17: 1 } },
  { cve: 'CVE-2024-10978', effect: WRONG_POLICIES, fixed: { 12: 21, 13: 17, 14: 14, 15: 9, 16: 5, 17: 1 } },
  {
    cve: 'CVE-2025-8713',
    effect: 'planner statistics of partitions and inheritance children show values of rows row level security hides',
    fixed: { 13: 22, 14: 19, 15: 14, 16: 10, 17: 6 },
  },
];

/** Final release date of each major (https://www.postgresql.org/support/versioning/). */
const END_OF_LIFE: Readonly<Record<number, string>> = {
  10: '2022-11-10', 11: '2023-11-09', 12: '2024-11-21', 13: '2025-11-13', 14: '2026-11-12',
  15: '2027-11-11', 16: '2028-11-09', 17: '2029-11-08', 18: '2030-11-14',
};

export function serverFindings(versionNum: number, version: string, today = new Date()): Finding[] {
  // server_version_num is MMmmmm since 10 (150004 = 15.4) and MMmmpp before (90624 = 9.6.24).
  const major = versionNum >= 100000 ? Math.floor(versionNum / 10000) : Math.floor(versionNum / 100) / 100;
  const minor = versionNum >= 100000 ? versionNum % 10000 : versionNum % 100;
  const object = `server PostgreSQL ${version}`;
  const findings: Finding[] = [];
  const missing = RLS_CVES.filter(({ fixed }) => {
    const majors = Object.keys(fixed).map(Number);
    if (major in fixed) return minor < fixed[major]!;
    return major < Math.min(...majors);
  });
  if (missing.length) {
    // A CVE this major never got a fix for (CVE-2025-8713 in 12) is not gone with a minor release.
    const minimum = missing.some(({ fixed }) => fixed[major] === undefined) ? [] : missing.map(({ fixed }) => fixed[major]!);
    findings.push({
      code: 'LBMT_SERVER_VULNERABLE',
      severity: 'warning',
      object,
      message: `this release predates the fixes for ${missing.map((c) => c.cve).join(', ')}: ${[...new Set(missing.map((c) => c.effect))].join('; ')}`,
      fix: minimum.length ? `upgrade to the latest ${major}.x minor release (at least ${major}.${Math.max(...minimum)})` : 'upgrade to a supported major version',
    });
  }
  const endOfLife = END_OF_LIFE[major];
  if (major < 10 || (endOfLife !== undefined && today.toISOString().slice(0, 10) > endOfLife)) {
    findings.push({
      code: 'LBMT_SERVER_UNSUPPORTED',
      severity: 'warning',
      object,
      message: `PostgreSQL ${major} is out of support${endOfLife ? ` since ${endOfLife}` : ''}: security fixes, RLS ones included, no longer ship for it`,
      fix: 'upgrade to a supported major version (https://www.postgresql.org/support/versioning/)',
    });
  }
  return findings;
}
