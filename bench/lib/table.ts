/** Plain-text tables and number formatting for bench reports (no colours: output is pasted into docs). */

export type Cell = string | number | undefined;

/** Thousands separators, a fixed number of decimals, '–' for missing values. */
export function num(n: number | undefined, digits = 0): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A ratio as `0.123×` (three significant figures, at least two decimals below 1). */
export function times(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  const digits = n >= 100 ? 0 : n >= 10 ? 1 : n >= 1 ? 2 : 3;
  return `${n.toFixed(digits)}×`;
}

export function ms(n: number | undefined, digits = 1): string {
  return n === undefined || !Number.isFinite(n) ? '–' : `${num(n, digits)} ms`;
}

/**
 * Render rows under a header with aligned columns: text left, numbers right. A row that is a
 * single string is printed as a section line spanning the table.
 */
export function table(headers: string[], rows: (Cell[] | string)[]): string {
  const cells = rows.map((r) =>
    typeof r === 'string' ? r : r.map((c) => (c === undefined ? '–' : String(c))),
  );
  const widths = headers.map((h, i) =>
    Math.max(h.length, ...cells.map((r) => (typeof r === 'string' ? 0 : (r[i] ?? '').length))),
  );
  const numeric = headers.map((_, i) =>
    cells.every(
      (r) => typeof r === 'string' || i >= r.length || /^[-+]?[\d,.–]+( ?(ms|s|×|%|\/s))?$/.test(r[i]!),
    ),
  );
  const line = (r: string[]) =>
    r
      .map((c, i) => (numeric[i] && i > 0 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const total = widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  const out = [line(headers), '-'.repeat(total)];
  for (const r of cells) out.push(typeof r === 'string' ? r : line(r));
  return out.join('\n');
}
