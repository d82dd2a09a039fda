/** What every `pollen deploy` generator returns: files for an operator to review and install. */
export interface DeployFile {
  /** Relative to the output folder. */
  path: string;
  content: string;
  /** 0o600 for anything holding a private key, 0o755 for scripts; 0o644 otherwise. */
  mode: number;
}

export const file = (path: string, content: string, mode = 0o644): DeployFile => ({ path, content, mode });
