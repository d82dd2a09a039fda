/**
 * Plays the person at the browser for a device login (RFC 8628) on the embedded provider: opens
 * the verification page, enters the user code, confirms it, signs in and consents, over plain
 * HTTP with a cookie jar. `pollen demo --oidc` logs its researcher in with it, and tests use it so
 * no browser is needed. It speaks the provider's own pages (oidc-provider's device and
 * interaction forms), not any provider's.
 */

export interface DeviceUserOptions {
  /** `verification_uri` as the CLI printed it. */
  verificationUri: string;
  userCode: string;
  /** The account to sign in as (the provider's user table). */
  login: string;
  /** Press "Abort" on the confirmation page instead of signing in. */
  deny?: boolean;
}

interface Form {
  action: string;
  fields: Record<string, string>;
}

/** Complete (or refuse) the device login; resolves with the provider's last page. */
export async function actAsDeviceUser(o: DeviceUserOptions): Promise<string> {
  const browser = new CookieBrowser();
  let html = await browser.get(o.verificationUri);
  const entry = formIn(html, 'op.deviceInputForm');
  html = await browser.post(entry.action, { ...entry.fields, user_code: o.userCode });
  const confirm = formIn(html, 'op.deviceConfirmForm');
  if (o.deny) return browser.post(confirm.action, { ...confirm.fields, abort: 'yes' });
  html = await browser.post(confirm.action, confirm.fields);
  // The sign-in form, then the consent form: each names its prompt in a hidden field.
  for (let step = 0; step < 4 && /name="prompt"/.test(html); step++) {
    const f = formIn(html);
    html = await browser.post(f.action, { ...f.fields, login: o.login, password: 'demo' });
  }
  if (!/Signed in/.test(html)) throw new Error(`the provider did not confirm the login: ${text(html)}`);
  return html;
}

/** The form with `id` (or the first form), its action and hidden fields. */
function formIn(html: string, id?: string): Form {
  const forms = [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)];
  const m = id ? forms.find((f) => f[1]?.includes(`id="${id}"`)) : forms[0];
  if (!m) throw new Error(`no ${id ?? ''} form on the provider's page: ${text(html)}`);
  const action = /action="([^"]*)"/.exec(m[1] ?? '')?.[1] ?? '';
  const fields: Record<string, string> = {};
  for (const input of (m[2] ?? '').matchAll(/<input\b[^>]*type="hidden"[^>]*>/g)) {
    const name = /name="([^"]*)"/.exec(input[0])?.[1];
    const value = /value="([^"]*)"/.exec(input[0])?.[1];
    if (name) fields[name] = value ?? '';
  }
  return { action, fields };
}

function text(html: string): string {
  return html
    .replace(/<style[\s\S]*?<\/style>/g, '')
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 300);
}

/** fetch with cookies kept across requests and redirects followed by hand (so cookies are seen). */
class CookieBrowser {
  readonly #cookies = new Map<string, string>();
  #base = '';

  get(url: string): Promise<string> {
    return this.#request(url, { method: 'GET' });
  }

  post(url: string, fields: Record<string, string>): Promise<string> {
    return this.#request(url, {
      method: 'POST',
      body: new URLSearchParams(fields).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  }

  async #request(url: string, init: RequestInit): Promise<string> {
    let target = new URL(url, this.#base || undefined);
    let req = init;
    for (let hop = 0; hop < 10; hop++) {
      this.#base = target.origin;
      const res = await fetch(target, {
        ...req,
        redirect: 'manual',
        headers: { ...(req.headers as Record<string, string>), cookie: this.#cookieHeader() },
      });
      for (const c of res.headers.getSetCookie()) {
        const [pair = ''] = c.split(';');
        const eq = pair.indexOf('=');
        const expired = /expires=Thu, 01 Jan 1970/i.test(c);
        if (eq > 0) {
          const name = pair.slice(0, eq).trim();
          if (expired) this.#cookies.delete(name);
          else this.#cookies.set(name, pair.slice(eq + 1).trim());
        }
      }
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel();
        target = new URL(location, target);
        req = { method: 'GET' };
        continue;
      }
      return res.text();
    }
    throw new Error(`too many redirects from ${url}`);
  }

  #cookieHeader(): string {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}
