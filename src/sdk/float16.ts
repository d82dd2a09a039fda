/**
 * IEEE 754 half precision (binary16), which JavaScript has no typed array for: a float16 array
 * is held as its raw bits in a Uint16Array. These convert between those bits and numbers, the one
 * conversion the SDK and the strategies use.
 *
 * Rounding is to nearest, ties to even, straight from the float64 value (no double rounding
 * through float32); values from 65520 up become infinity, as in NumPy. NaN becomes the quiet NaN
 * 0x7e00 with the input's sign.
 */

// Sign and exponent of a float64 are read from its bits: exact, where Math.log2 is not.
const scratch = new Float64Array(1);
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const scratchHigh = new Uint32Array(scratch.buffer, LITTLE_ENDIAN_HOST ? 4 : 0, 1);

/** Units in the last place of a float16, 2^-24 (subnormals) … 2^5 (the top binade). */
const ULP = Array.from({ length: 30 }, (_, i) => 2 ** (i - 24));

/** The float16 bits nearest to `value` (round to nearest, ties to even). */
export function float16Bits(value: number): number {
  scratch[0] = value;
  const high = scratchHigh[0]!;
  const sign = high >>> 31 === 1 ? 0x8000 : 0;
  if (Number.isNaN(value)) return sign | 0x7e00;
  const abs = Math.abs(value);
  if (abs >= 65520) return sign | 0x7c00; // beyond halfway past 65504, the largest float16
  // Binary exponent of abs, floored at -14: below it float16 values are subnormal, 2^-24 apart.
  const e = Math.max(((high >>> 20) & 0x7ff) - 1023, -14);
  const q = abs / ULP[e - 10 + 24]!; // exact: a division by a power of two
  let r = Math.round(q);
  if (r - q === 0.5 && r % 2 === 1) r -= 1; // a tie goes to the even neighbour
  // r is the significand with its implicit bit (1024 ≤ r ≤ 2048 when normal): added to the
  // exponent field it carries over when rounding reaches the next power of two.
  return sign | ((e + 14) * 1024 + r);
}

/** 2^52 times each ULP: adding one to |v| and taking it off rounds |v| to a multiple of that ULP. */
const MAGIC = ULP.map((u) => u * 2 ** 52);

/**
 * The float16 value nearest to `value` (ties to even) as a number: `float16Value(float16Bits(value))`
 * without the bits, for loops that compute in float16 (FedAvg's float16 sum). Adding 2^52 · ulp puts
 * |value| in a binade whose spacing is that ulp, so the hardware's float64 rounding (to nearest,
 * ties to even) does the float16 rounding; taking it off again is exact.
 */
export function float16Round(value: number): number {
  const abs = Math.abs(value);
  if (!(abs < 65520)) return Number.isNaN(value) ? value : value > 0 ? Infinity : -Infinity;
  scratch[0] = abs;
  const magic = MAGIC[Math.max(((scratchHigh[0]! >>> 20) & 0x7ff) - 1023, -14) - 10 + 24]!;
  const r = abs + magic - magic;
  return value < 0 ? -r : r === 0 ? value * 0 : r; // value * 0 keeps the sign of a zero
}

/** The number float16 `bits` stand for (exact: every float16 is a float64). */
export function float16Value(bits: number): number {
  const exponent = (bits >>> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : Number.NaN;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

/**
 * Numbers to float16 bits, each rounded to the nearest float16 (ties to even).
 *
 * @example
 * ```ts
 * const half = toFloat16([1, 0.1, 70000]); // Uint16Array [0x3c00, 0x2e66, 0x7c00]
 * arrays.set('w', { dtype: 'float16', shape: [3], data: half });
 * ```
 */
export function toFloat16(values: ArrayLike<number>, out = new Uint16Array(values.length)): Uint16Array {
  for (let i = 0; i < values.length; i++) out[i] = float16Bits(values[i]!);
  return out;
}

/**
 * Float16 bits to float32 values (exact: float32 holds every float16).
 *
 * @example
 * ```ts
 * const w = fromFloat16(arrays.get('w', 'float16')!.data); // a Float32Array
 * ```
 */
export function fromFloat16(bits: Uint16Array, out = new Float32Array(bits.length)): Float32Array {
  for (let i = 0; i < bits.length; i++) out[i] = float16Value(bits[i]!);
  return out;
}
