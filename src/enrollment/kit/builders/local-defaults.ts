import { json, type KitBuilder } from '../plan.js';
import { KIT_PATHS } from '../vocabulary.js';

/** local/*.default: settings a site copies (without .default) and edits. */
export const localDefaultsBuilder: KitBuilder = {
  name: 'local-defaults',
  build(spec, plan) {
    const site = spec.type === 'client' || spec.type === 'server';
    plan.file(
      'local/log_config.json.default',
      json({
        _comment: 'Copy to log_config.json to change logging. Levels: trace, debug, info, warn, error.',
        level: 'info',
        format: 'json',
        file: `../${KIT_PATHS.log}`,
        redact: ['token', 'authorization', 'privateKey'],
      }),
    );
    if (spec.type !== 'admin')
      plan.file(
        'local/resources.json.default',
        json({
          _comment: 'Copy to resources.json to limit what this participant may use.',
          ...(spec.type === 'client'
            ? { maxConcurrentRuns: 1, cpus: 'all', gpus: [], memoryLimitMb: null, workDir: '../transfer' }
            : spec.type === 'server'
              ? { maxConcurrentRuns: 4, maxNodes: 1000, runRetentionDays: 30 }
              : { maxConnections: 1000 }),
        }),
      );
    if (site) {
      plan.file(
        'local/authorization.json.default',
        json({
          _comment:
            'Copy to authorization.json to decide who may do what on this site. Rights: any, none, o:site (same organisation), n:submitter (own runs).',
          format: 'pollen-authz/v1',
          permissions: {
            project_admin: 'any',
            org_admin: { submit_run: 'none', manage_run: 'o:site', view: 'o:site', operate: 'o:site' },
            lead: { submit_run: 'any', manage_run: 'n:submitter', view: 'any', operate: 'o:site' },
            member: { submit_run: 'none', manage_run: 'none', view: 'any', operate: 'none' },
          },
        }),
      );
      plan.file(
        'local/privacy.json.sample',
        json({
          _comment:
            'Copy to privacy.json to restrict what leaves this site. A run names a scope; results pass its filters.',
          scopes: [
            { name: 'public', properties: { train_dataset: '/data/public' }, resultFilters: [] },
            {
              name: 'private',
              properties: { train_dataset: '/data/private' },
              resultFilters: [
                { name: 'exclude-vars', args: { pattern: '.*bias.*' } },
                { name: 'gaussian-dp', args: { clipNorm: 1.0, noiseMultiplier: 0.8 } },
              ],
            },
          ],
          defaultScope: 'public',
        }),
      );
    }
  },
};
