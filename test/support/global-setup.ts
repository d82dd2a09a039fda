import type { TestProject } from 'vitest/node';
import { startPostgres } from './postgres.js';

// One PostgreSQL server for the whole run; each test file makes its own database on it.
export default async function setup(project: TestProject) {
  const pg = await startPostgres();
  project.provide('postgresUrl', pg.url);
  return () => pg.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}
