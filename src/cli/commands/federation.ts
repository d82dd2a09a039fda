import type { Command } from 'commander';
import { action, lazy } from '../command.js';
import { superLinkAddAction, superLinkAddCommand } from '../config/add-command.js';

const federationAccept = lazy(() => import('../federation/accept.js'), 'federationAccept');
const federationCreate = lazy(() => import('../federation/create.js'), 'federationCreate');
const federationInvite = lazy(() => import('../federation/invite.js'), 'federationInvite');
const federationList = lazy(() => import('../federation/list.js'), 'federationList');
const federationMembers = lazy(() => import('../federation/members.js'), 'federationMembers');
const federationAddNode = lazy(() => import('../federation/nodes.js'), 'federationAddNode');
const federationRemoveNode = lazy(() => import('../federation/nodes.js'), 'federationRemoveNode');
const federationRemove = lazy(() => import('../federation/remove.js'), 'federationRemove');
const revokeInvitation = lazy(() => import('../federation/revoke-invitation.js'), 'revokeInvitation');
const federationShow = lazy(() => import('../federation/show.js'), 'federationShow');

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerFederation(program: Command): void {
  const cmd = program
    .command('federation')
    .description('federations on a SuperLink: members with a role each, invitations, nodes, runs')
    .addHelpText(
      'after',
      `
One SuperLink hosts several federations. Every node serves the built-in federation \`default\`,
governed by your own roles; any other federation is created here, and in it your rights come
from your role as its member. You see only the federations you belong to (a project admin sees
all). These commands use the default SuperLink connection, or --superlink NAME
(pollen config superlink list). See docs/identity.md.

Examples:
  pollen federation create cancer-study --description "Oncology, 2027" --node-org hospital-a
  pollen federation invite cancer-study --email ana@uni-a.example --role lead
  pollen federation show cancer-study
  pollen run examples/mnist cancer-study --stream`,
    );

  cmd
    .command('create <NAME>')
    .description('create a federation; you become its first member, as its project admin')
    .option('--description <text>', 'what it is for, shown in lists')
    .option(
      '--node-org <org>',
      'nodes whose certificate names this organisation serve it without registration (repeatable)',
      collect,
      [],
    )
    .addHelpText(
      'after',
      `
Examples:
  pollen federation create cancer-study --description "Oncology, 2027"
  pollen federation create eu-pilot --node-org hospital-a --node-org hospital-b --json

A name uses letters, digits, _ and -. Nodes join by registration (pollen supernode register
KEY.pub NAME) or, with --node-org, by the organisation their certificate names.`,
    )
    .action(
      action<{ description?: string; nodeOrg: string[] }>((o, out, [name]) =>
        federationCreate({ ...o, name: name! }, out),
      ),
    );

  cmd
    .command('list')
    .alias('ls')
    .description('list the federations on the SuperLink that you belong to, with your role in each')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation list
  pollen federation ls --superlink prod --json

Your SuperLink connections (what this command listed before) are listed by
pollen config superlink list.`,
    )
    .action(
      action<object>((o, out) => {
        out.progress(
          'SuperLink connections: pollen config superlink list (they moved from pollen federation list)',
        );
        return federationList(o, out);
      }),
    );

  cmd
    .command('show <NAME>')
    .description(
      'a federation at a glance: members, nodes with their status, run history, pending invitations',
    )
    .option('--runs <n>', 'how many recent runs to show (default 20)')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation show cancer-study
  pollen federation show cancer-study --runs 50 --json`,
    )
    .action(action<{ runs?: string }>((o, out, [name]) => federationShow({ ...o, name: name! }, out)));

  cmd
    .command('invite <NAME>')
    .description(
      'invite one identity (a verified e-mail or a subject) with a role; prints a single-use code once',
    )
    .option('--email <address>', 'the verified e-mail of the person invited')
    .option(
      '--subject <subject>',
      'or the identity invited, as pollen whoami names it (user:…, service_account:…)',
    )
    .requiredOption(
      '--role <role>',
      'their role in this federation: lead, member, org_admin or project_admin',
    )
    .option('--expires <when>', 'how long the invitation stays open: a duration (7d, 48h) or a date', '7d')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation invite cancer-study --email ana@uni-a.example --role member
  pollen federation invite cancer-study --subject service_account:nightly --role member --expires 48h --json

The code is shown once (with --json in the field "code"), with the commands the invitee runs.
Only the identity invited can accept it, once, before it expires; revoke it until then with
pollen federation revoke-invitation ID.`,
    )
    .action(
      action<{ email?: string; subject?: string; role: string; expires: string }>((o, out, [name]) =>
        federationInvite({ ...o, name: name! }, out),
      ),
    );

  cmd
    .command('accept <CODE>')
    .description('accept an invitation: join its federation as the identity it was made for')
    .addHelpText(
      'after',
      `
Examples:
  pollen login --address superlink.example.org:9093 --root-fingerprint sha256:3f5a…
  pollen federation accept pollen_inv_…

Log in first as the identity invited (the e-mail or subject the invitation names): accepting it
as anyone else is refused, and a code works only once.`,
    )
    .action(action<object>((o, out, [code]) => federationAccept({ ...o, code: code! }, out)));

  cmd
    .command('members <NAME>')
    .description('list the members of a federation with their role in it')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation members cancer-study
  pollen federation members cancer-study --json`,
    )
    .action(action<object>((o, out, [name]) => federationMembers({ ...o, name: name! }, out)));

  cmd
    .command('remove <NAME> <SUBJECT>')
    .description('take a member out of a federation (their other federations stay as they are)')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation remove cancer-study user:ana
  pollen federation remove cancer-study service_account:nightly --json

SUBJECT as pollen federation members shows it.`,
    )
    .action(
      action<object>((o, out, [name, subject]) =>
        federationRemove({ ...o, name: name!, subject: subject! }, out),
      ),
    );

  cmd
    .command('revoke-invitation <ID>')
    .description('revoke an invitation that has not been accepted yet')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation revoke-invitation 7d0c5a1e
  pollen federation revoke-invitation 7d0c5a1e --json

pollen federation show NAME lists the pending invitations with their ids.`,
    )
    .action(action<object>((o, out, [id]) => revokeInvitation({ ...o, id: id! }, out)));

  cmd
    .command('add-node <NAME> <NODE_ID>')
    .description('make a known node serve the federation too (it keeps serving its others)')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation add-node cancer-study 3f9c0a12b4d5e6f7
  pollen federation add-node cancer-study 3f9c0a12b4d5e6f7 --json

NODE_ID as pollen supernode list shows it. A node whose key is not registered yet joins with
pollen supernode register KEY.pub NAME instead.`,
    )
    .action(
      action<object>((o, out, [name, nodeId]) =>
        federationAddNode({ ...o, name: name!, nodeId: nodeId! }, out),
      ),
    );

  cmd
    .command('remove-node <NAME> <NODE_ID>')
    .description('a node added to the federation stops serving it (its other federations stay)')
    .addHelpText(
      'after',
      `
Examples:
  pollen federation remove-node cancer-study 3f9c0a12b4d5e6f7
  pollen federation remove-node cancer-study 3f9c0a12b4d5e6f7 --json

A node that serves the federation by its organisation (create --node-org) stays
(NODE_NOT_IN_FEDERATION says so); its runs reach it no more once it is removed.`,
    )
    .action(
      action<object>((o, out, [name, nodeId]) =>
        federationRemoveNode({ ...o, name: name!, nodeId: nodeId! }, out),
      ),
    );

  // The earlier spelling: the connection entries moved to `pollen config superlink add`.
  superLinkAddCommand(cmd.command('add <NAME>', { hidden: true })).action(
    superLinkAddAction((out) =>
      out.warn('`pollen federation add` moved to `pollen config superlink add`; this spelling keeps working'),
    ),
  );
}
