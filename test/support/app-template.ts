/** What the app of `pollen new` (templates/ts) prints, as tests read it back. */

export interface TemplateModel {
  weights: number[];
  bias: number[];
}

/** The line the template's ServerApp prints when the run ends, parsed: `final model {...}`. */
export function finalModel(output: string): TemplateModel {
  const line = output.split('\n').find((l) => l.startsWith('final model '));
  if (line === undefined) throw new Error(`no "final model" line in:\n${output}`);
  return JSON.parse(line.slice('final model '.length)) as TemplateModel;
}
