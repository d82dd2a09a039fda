import { rpc } from '../../transport/errors.js';
import { withControl } from '../control-client.js';
import { bold, type Output } from '../output.js';
import { invitationJson } from './format.js';

export interface RevokeInvitationOptions {
  id: string;
  config?: string;
  superlink?: string;
}

/** `pollen federation revoke-invitation`: an invitation not used yet can no longer be accepted. */
export async function revokeInvitation(o: RevokeInvitationOptions, out: Output): Promise<void> {
  await withControl(undefined, o, async (s) => {
    const res = await rpc(s.federations.revokeInvitation({ id: o.id }));
    const invitation = invitationJson(res.invitation!);
    out.result(
      { superlink: s.connection.name, invitation },
      (d) =>
        `${bold('revoked')} invitation ${d.invitation.id} of ${d.invitation.email ?? d.invitation.subject} to ${d.invitation.federation}`,
    );
  });
}
