/**
 * The clock of logins: when a token is due for refresh, how long to wait between polls. One
 * object, so that tests drive the device-flow wait and token expiry instead of sleeping.
 */
export const loginClock = {
  now: (): number => Date.now(),
  sleep: (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms)),
};
