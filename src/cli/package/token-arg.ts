import { existsSync, readFileSync, statSync } from 'node:fs';

/** A token given as a value, or as the path of a file holding it. */
export function tokenArgument(value: string): string {
  const v = value.trim();
  return existsSync(v) && statSync(v).isFile() ? readFileSync(v, 'utf8').trim() : v;
}
