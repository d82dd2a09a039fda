/**
 * The monitoring samples in deploy/monitoring/ hold up under Prometheus's own tools: the scrape
 * configuration and the alert rules are valid, and each alert fires on what it is for and stays
 * quiet on the healthy case beside it (promtool test rules: deploy/monitoring/tests/).
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const MONITORING = resolve(import.meta.dirname, '../deploy/monitoring');
const promtool = (...args: string[]) => {
  const r = spawnSync('promtool', args, { cwd: MONITORING, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
};

describe('deploy/monitoring', () => {
  it('has a valid scrape configuration and valid alert rules', () => {
    const config = promtool('check', 'config', 'prometheus.yml');
    expect(config.out).toContain('SUCCESS');
    expect(config.code).toBe(0);
    const rules = promtool('check', 'rules', 'alerts.yml');
    expect(rules.out).toMatch(/SUCCESS: 8 rules found/);
    expect(rules.code).toBe(0);
  });

  it('fires each alert on what it is for, and not on the healthy case (promtool test rules)', () => {
    const r = promtool('test', 'rules', 'tests/alerts.test.yml');
    expect(r.out).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });
});
