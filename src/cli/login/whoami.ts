import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, dim, type Output } from '../output.js';

export interface WhoAmIOptions {
  federation?: string;
  config?: string;
}

/** `pollen whoami`: who the SuperLink takes you for (a login, a certificate, a service account). */
export async function whoami(o: WhoAmIOptions, out: Output): Promise<void> {
  await withControl(o.federation, o, async (s) => {
    const { identity: id } = await rpc(s.control.whoAmI({}));
    const identity = {
      kind: id?.kind ?? '',
      subject: id?.subject ?? '',
      name: id?.name ?? '',
      email: id?.email || null,
      org: id?.org || null,
      roles: id?.roles ?? [],
      expiresAt: id?.expiresAt ? new Date(Number(id.expiresAt)).toISOString() : null,
    };
    out.result({ superlink: s.connection.name, identity }, ({ superlink, identity: i }) => [
      `${bold(i.name || i.subject)} on ${bold(superlink)} ${dim(`(${i.kind})`)}`,
      `  subject        ${i.subject}`,
      `  e-mail         ${i.email ?? dim('none')}`,
      `  organisation   ${i.org ?? dim('none')}`,
      `  roles          ${i.roles.length ? i.roles.join(', ') : dim('none')}`,
      `  expires        ${i.expiresAt ?? dim('never')}`,
    ]);
  });
}
