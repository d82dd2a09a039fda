import { describe, expect, it } from 'vitest';
import { appEnvironment } from './app-env.js';

describe('appEnvironment', () => {
  const host = {
    PATH: '/usr/bin',
    HOME: '/home/site',
    POLLEN_CERT_SERVICE_API_KEY: 'secret',
    DATABASE_URL: 'postgres://u:p@db/x',
    AWS_SECRET_ACCESS_KEY: 'k',
    CUDA_VISIBLE_DEVICES: '0',
    POLLEN_APP_ENV: 'CUDA_VISIBLE_DEVICES, HF_HOME, bad-name',
  };

  it("keeps what a Node program needs and what the operator lists, never the host's secrets", () => {
    const env = appEnvironment({ POLLEN_RUN_ID: 'r1', POLLEN_APP_TOKEN: 't' }, host);
    expect(env).toEqual({
      PATH: '/usr/bin',
      HOME: '/home/site',
      CUDA_VISIBLE_DEVICES: '0',
      POLLEN_RUN_ID: 'r1',
      POLLEN_APP_TOKEN: 't',
    });
  });

  it('passes nothing extra without POLLEN_APP_ENV', () => {
    const { POLLEN_APP_ENV: _, ...rest } = host;
    expect(Object.keys(appEnvironment({}, rest)).sort()).toEqual(['HOME', 'PATH']);
  });
});
