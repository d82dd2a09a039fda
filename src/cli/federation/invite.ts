import { PollenError } from '../../errors.js';
import { certificateFingerprint } from '../../pki/fingerprint.js';
import { rpc } from '../../transport/errors.js';
import type { Connection } from '../connections.js';
import { withControl } from '../control-client.js';
import { bold, dim, type Output } from '../output.js';
import { parseExpiry } from '../service-account/expiry.js';
import { invitationJson } from './format.js';

export interface FederationInviteOptions {
  name: string;
  /** Exactly one of them: the identity the invitation is bound to. */
  email?: string;
  subject?: string;
  role: string;
  /** How long it stays open: a duration (7d) or a date. */
  expires: string;
  config?: string;
  superlink?: string;
}

const ONCE = 'the code is shown only now: the SuperLink keeps only its hash';

/** `pollen federation invite`: an invitation for one identity; prints its code once. */
export async function federationInvite(o: FederationInviteOptions, out: Output): Promise<void> {
  if ((o.email === undefined) === (o.subject === undefined))
    throw new PollenError('USAGE', 'Give exactly one of --email and --subject: the identity invited', {
      hint: 'pollen federation invite NAME --email ana@uni-a.example --role member (or --subject user:SUBJECT)',
    });
  const now = Date.now();
  const expiresAt = parseExpiry(o.expires, now);
  if (expiresAt === undefined)
    throw new PollenError('INVALID_ARGUMENT', 'An invitation always expires', {
      hint: 'Give --expires as a duration (7d, 48h) or a date (2027-06-30).',
    });
  const ttlSeconds = Math.ceil((expiresAt - now) / 1000);
  await withControl({ federation: o.name }, o, async (s) => {
    const res = await rpc(
      s.federations.inviteMember({
        federation: o.name,
        email: o.email ?? '',
        subject: o.subject ?? '',
        role: o.role,
        ttlSeconds,
      }),
    );
    const invitation = invitationJson(res.invitation!);
    const invitee = inviteeCommands(s.connection, res.code);
    out.warn(`${ONCE}; give it to ${invitation.email ?? invitation.subject} alone.`);
    out.result({ superlink: s.connection.name, invitation, code: res.code, invitee, warning: ONCE }, (d) => [
      `${bold('invited')} ${d.invitation.email ?? d.invitation.subject} to ${bold(d.invitation.federation)} as ${d.invitation.role} ${dim(`(invitation ${d.invitation.id}, expires ${d.invitation.expiresAt})`)}`,
      '',
      `  ${d.code}`,
      '',
      'The invitee runs (it works once, only for the identity invited):',
      ...d.invitee.map((c) => `  ${c}`),
      dim(`Revoke it until it is used: pollen federation revoke-invitation ${d.invitation.id}`),
    ]);
  });
}

/**
 * What the invitee types: log in to this SuperLink (its root pinned by fingerprint, as the admin
 * hands it out), then accept the code.
 */
function inviteeCommands(c: Connection, code: string): string[] {
  const accept = `pollen federation accept ${code}`;
  if (!c.tls) return [`pollen config superlink add NAME --address ${c.address} --insecure`, accept];
  return [
    `pollen login --address ${c.address} --root-fingerprint ${certificateFingerprint(c.tls.ca)}`,
    accept,
  ];
}
