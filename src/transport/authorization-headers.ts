/** Every `authorization` header of an HTTP/2 request, read from its raw headers (context.ts says why). */
export function authorizationHeaders(req: {
  rawHeaders?: readonly string[];
  headers?: Record<string, unknown>;
}): string[] {
  // The hot paths (Fleet polls) send none: no scan of the raw headers then.
  if (req.headers && req.headers.authorization === undefined) return [];
  const raw = req.rawHeaders ?? [];
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2)
    if (raw[i]!.toLowerCase() === 'authorization') out.push(raw[i + 1]!);
  return out;
}
