import type { LoadedCa } from '../../../pki/ca.js';
import { certificateFingerprint } from '../../../pki/fingerprint.js';
import { createManifest, MANIFEST_PATHS, signManifest } from '../../kit-manifest.js';
import type { KitBuilder } from '../plan.js';
import { KIT_PATHS } from '../vocabulary.js';

/**
 * The last builder of a kit: the manifest, and with a CA its signature, the signer chain and the
 * root. Without a CA the kit is unsigned and a warning says so.
 */
export function signingBuilder(ca: LoadedCa | null): KitBuilder {
  return {
    name: 'manifest',
    build(spec, plan) {
      if (ca) {
        plan.file(KIT_PATHS.rootCa, `${ca.rootPem.trim()}\n`);
        plan.file(MANIFEST_PATHS.signer, `${ca.intermediatePem.trim()}\n${ca.rootPem.trim()}\n`);
      }
      const manifest = createManifest(spec, plan.files, {
        rootCaFingerprint: ca?.rootFingerprint ?? spec.enrollment?.rootCaFingerprint ?? null,
        signer: ca
          ? {
              subject: ca.intermediate.subject,
              fingerprint: certificateFingerprint(new Uint8Array(ca.intermediate.rawData)),
            }
          : null,
      });
      const bytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8');
      plan.file(MANIFEST_PATHS.manifest, bytes);
      if (ca)
        plan.file(
          MANIFEST_PATHS.signature,
          `${signManifest(bytes, ca.issuer.keyObject).toString('base64')}\n`,
        );
      else
        plan.warnings.push(
          'the kit is unsigned: no CA folder (-c or POLLEN_CA_PATH), so sites cannot check that it came from you',
        );
    },
  };
}
