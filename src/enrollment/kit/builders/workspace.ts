import type { KitBuilder } from '../plan.js';
import { KIT_PATHS } from '../vocabulary.js';

/** startup/, local/, transfer/. */
export const workspaceBuilder: KitBuilder = {
  name: 'workspace',
  build(_spec, plan) {
    plan.dir(KIT_PATHS.startup);
    plan.dir(KIT_PATHS.local);
    plan.dir(KIT_PATHS.transfer);
  },
};
