/**
 * User config (a run's config, a node's config) ↔ protobuf: names checked as record keys are,
 * values a finite number, a string or a boolean. Failures are RECORD_INVALID.
 */
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { PollenError } from '../errors.js';
import * as pb from '../gen/pollen/v1/records_pb.js';
import type { UserConfigValue } from '../sdk/context.js';
import { validateName } from '../sdk/records.js';

export function configToWire(config: Readonly<Record<string, UserConfigValue>>): {
  [key: string]: pb.ConfigValue;
} {
  return Object.fromEntries(
    Object.entries(config).map(([key, value]) => {
      validateName('Config', key);
      let v: MessageInitShape<typeof pb.ConfigValueSchema>['value'];
      if (typeof value === 'number' && Number.isFinite(value)) v = { case: 'number', value };
      else if (typeof value === 'string') v = { case: 'text', value };
      else if (typeof value === 'boolean') v = { case: 'flag', value };
      else
        throw new PollenError(
          'RECORD_INVALID',
          `Config "${key}" must be a finite number, a string or a boolean`,
        );
      return [key, create(pb.ConfigValueSchema, { value: v })];
    }),
  );
}

export function configFromWire(map: {
  readonly [key: string]: pb.ConfigValue;
}): Record<string, UserConfigValue> {
  // fromEntries defines properties, so a "__proto__" key stays a plain key.
  return Object.fromEntries(
    Object.entries(map).map(([key, cv]) => {
      validateName('Config', key);
      const v = cv?.value;
      if (v === undefined || v.case === undefined)
        throw new PollenError('RECORD_INVALID', `Config "${key}" has no value`);
      if (v.case === 'number' && !Number.isFinite(v.value))
        throw new PollenError('RECORD_INVALID', `Config "${key}" must be a finite number`);
      return [key, v.value];
    }),
  );
}
