// Writes docs/errors.md from the error catalogue in src/errors.ts (a test checks it is current).
import { writeFileSync } from 'node:fs';
import { ERROR_CODES, ExitCode } from '../src/errors.js';

export function renderErrorsDoc(): string {
  const exitName = Object.fromEntries(Object.entries(ExitCode).map(([k, v]) => [v, k]));
  const rows = Object.entries(ERROR_CODES).map(
    ([code, s]) =>
      `| \`${code}\` | ${s.status} | ${s.exit} (${exitName[s.exit]}) | ${s.retryable ? 'yes' : ''} | ${s.hint} |`,
  );
  return `# Error codes and exit codes

Every failure has a stable code. The CLI prints \`error[CODE]: message\` and a hint (with \`--json\`:
\`{"ok": false, "error": {"code", "message", "hint"}}\`) and exits with the code's exit status.
Services answer \`{"error": {"code", "message", "hint"}}\` with the HTTP status below.
This file is generated from \`src/errors.ts\` by \`npx tsx scripts/gen-errors-doc.ts\`.

## Exit codes

| exit | name | meaning |
|---|---|---|
| 0 | OK | success |
| 1 | INTERNAL | a bug: the message says where to look |
| 2 | USAGE | wrong flags or arguments |
| 3 | INVALID_INPUT | a file or request that is malformed or refused as weak |
| 4 | NOT_FOUND | a file, CA, request or certificate that does not exist |
| 5 | UNAUTHORIZED | a token, key or certificate that is not accepted |
| 6 | CONFLICT | already exists, already used, already enrolled |
| 7 | UNAVAILABLE | a service that cannot be reached |
| 8 | PENDING | enrollment waits for an administrator's approval |
| 9 | REJECTED | enrollment refused by policy or by an administrator |

## Error codes

A code marked **retry** is expected to pass (a service down, overloaded or failing): clients
try again with backoff. Every other code is final until something changes: retrying the same
request gets the same answer.

| code | HTTP | exit | retry | what to do |
|---|---|---|---|---|
${rows.join('\n')}
`;
}

if (process.argv[1]?.endsWith('gen-errors-doc.ts')) writeFileSync('docs/errors.md', renderErrorsDoc());
