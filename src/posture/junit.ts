import type { PostureReport } from './index.js';

/**
 * `doctor --format junit`: the report as JUnit XML, which CI systems (GitHub Actions reporters,
 * GitLab, Jenkins, CircleCI) show as test results. One test case per finding, named by its code and
 * object: an `error` finding is a failure, a warning or info finding a passing case whose output
 * says what was found. A report without findings is one passing case, so "nothing found" is visible
 * too. Names from the database are escaped for XML and stripped of characters XML cannot carry.
 */
export function formatPostureJunit(report: PostureReport, suite = 'linkbay-multitenant doctor'): string {
  const errors = report.findings.filter((f) => f.severity === 'error').length;
  const cases = report.findings.map((f) => {
    const name = attr(`${f.code} ${f.object}`);
    const body = text(`${f.message}\nfix: ${f.fix}`);
    if (f.severity === 'error') {
      return `    <testcase classname="${attr(suite)}" name="${name}">\n      <failure type="${attr(f.code)}" message="${attr(f.message)}">${body}</failure>\n    </testcase>`;
    }
    return `    <testcase classname="${attr(suite)}" name="${name}">\n      <system-out>${text(`${f.severity}: `)}${body}</system-out>\n    </testcase>`;
  });
  if (cases.length === 0) cases.push(`    <testcase classname="${attr(suite)}" name="tenant isolation posture"/>`);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${attr(suite)}" tests="${cases.length}" failures="${errors}">`,
    `  <testsuite name="${attr(suite)}" tests="${cases.length}" failures="${errors}" errors="0">`,
    `    <properties><property name="server" value="${attr(report.serverVersion)}"/><property name="runtimeRole" value="${attr(report.runtimeRole)}"/></properties>`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

// XML 1.0 allows tab, newline, carriage return and everything from U+0020 on (bar surrogates and FFFE/FFFF).
const NOT_XML = /[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu;

function text(value: string): string {
  return value.replace(NOT_XML, '\ufffd').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function attr(value: string): string {
  return text(value).replace(/"/g, '&quot;').replace(/\n/g, '&#10;');
}
