import { json, type KitBuilder } from '../plan.js';
import { KIT_PATHS, type KitType } from '../vocabulary.js';

/** startup/enrollment.json and startup/enrollment_token (0600). */
export interface EnrollmentConfig {
  certServiceUrl: string;
  rootCaFingerprint?: string;
  name: string;
  type: KitType;
}

export const enrollmentBuilder: KitBuilder = {
  name: 'enrollment',
  build(spec, plan) {
    if (spec.enrollment) {
      const cfg: EnrollmentConfig = {
        certServiceUrl: spec.enrollment.certServiceUrl,
        ...(spec.enrollment.rootCaFingerprint && { rootCaFingerprint: spec.enrollment.rootCaFingerprint }),
        name: spec.name,
        type: spec.type,
      };
      plan.file(KIT_PATHS.enrollmentConfig, json(cfg));
    }
    if (spec.token) plan.file(KIT_PATHS.token, `${spec.token}\n`, 0o600, { secret: true });
  },
};
