import type { KitBuilder } from '../plan.js';
import { KIT_PATHS } from '../vocabulary.js';

/** startup/requirements.txt: what the site's Python environment must hold (start.sh checks it). */
export const requirementsBuilder: KitBuilder = {
  name: 'requirements',
  build(spec, plan) {
    if (spec.requirements === null) return;
    plan.file(
      KIT_PATHS.requirements,
      `# The Python distributions this participant's apps need (checked by start.sh; see readme.txt).\n${spec.requirements.map((r) => `${r}\n`).join('')}`,
      0o644,
    );
  },
};
