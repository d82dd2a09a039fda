import { relative } from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

/**
 * Prints the plain closing line `N passed, N failed, N skipped` that CI reads, after one
 * `FAILED file > test: first line of the error` line per failure: CI shows only the end of a
 * run's output, and scripts/test.mjs repeats these lines at the very end.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let skipped = 0;
    const failures: string[] = [];
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const result = t.result();
        if (result.state === 'passed') passed++;
        else if (result.state === 'failed')
          failures.push(
            `${relative(process.cwd(), m.moduleId)} > ${t.fullName}: ${firstLine(result.errors?.[0]?.message)}`,
          );
        else skipped++;
      }
      if (m.state() === 'failed' && [...m.children.allTests()].length === 0)
        failures.push(`${relative(process.cwd(), m.moduleId)}: ${firstLine(m.errors()[0]?.message)}`);
    }
    const listed = failures.map((f) => `FAILED ${f}\n`).join('');
    process.stdout.write(`\n${listed}${passed} passed, ${failures.length} failed, ${skipped} skipped\n`);
  }
}

const firstLine = (message: string | undefined): string =>
  (message ?? 'no error message').split('\n')[0]!.slice(0, 300);
