import { Command, CommanderError, Option } from 'commander';
import { ExitCode } from '../errors.js';
import { VERSION } from '../version.js';
import { setIo } from './command.js';
import { registerCommands } from './commands/index.js';
import { environmentVariables } from './env-options.js';
import { type Io, Output, Reported } from './output.js';
import { flareSpellings, usageError } from './usage.js';

export function buildProgram(io: Io = { stdout: process.stdout, stderr: process.stderr }): Command {
  const program = new Command('pollen')
    .description(
      'Pollen: secure federated learning. A project CA enrolls every site; SuperNodes train on local ' +
        'data and send only model updates to the SuperLink over mutual TLS.',
    )
    .version(VERSION, '-V, --version', 'print the version')
    .option('--json', 'print one JSON document on stdout (errors too)')
    .addOption(
      new Option('--config <file>', 'the SuperLink connections file (default: ~/.pollen/config.toml)').env(
        'POLLEN_CONFIG',
      ),
    )
    .addOption(
      new Option(
        '--superlink <name>',
        'the SuperLink connection to use (default: pollen config superlink use NAME); a last FEDERATION argument is then a federation on it',
      ).env('POLLEN_SUPERLINK'),
    )
    .addOption(
      new Option(
        '--token-file <file>',
        'a file holding a service-account secret, presented instead of a login or certificate (or POLLEN_TOKEN)',
      ).env('POLLEN_TOKEN_FILE'),
    )
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false, showGlobalOptions: true })
    .exitOverride()
    // Before the commands are added: they copy these settings when they are made.
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  setIo(program, io);
  registerCommands(program);
  program.addHelpText(
    'after',
    '\nStart here:\n' +
      '  pollen demo                                  a whole secure federation on this machine, trained on MNIST\n' +
      '  pollen demo enrollment                       the auto-scale enrollment workflow on its own\n' +
      '  pollen cert init -n "My Project" -o ./ca     a project CA (manual workflow: then cert site, package)\n' +
      '  pollen new my-app                            a new app; try it with pollen simulate my-app\n' +
      `\nEnvironment variables mirror the flags (each option lists its own; a flag wins over its variable):\n${wrap(
        environmentVariables(program)
          .map((v) => v.name)
          .join(', '),
      )}\n` +
      'Exit codes: 0 ok, 1 internal, 2 usage, 3 invalid input, 4 not found, 5 unauthorised,\n' +
      '6 conflict, 7 unavailable, 8 pending approval, 9 rejected. Docs: docs/cli.md',
  );
  return program;
}

/** `text` broken at spaces into lines of at most 92 characters. */
function wrap(text: string): string {
  return text.replace(/(.{1,92})(?: |$)/g, '$1\n').trimEnd();
}

/**
 * Run the CLI; returns the exit code. Only this function and bin/ own the process. `argv` is
 * process.argv's shape (node, script, args…); `io` lets tests run it in-process.
 */
export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const program = buildProgram(io);
  const json = argv.includes('--json');
  const out = new Output(json, io.stdout, io.stderr);
  const args = flareSpellings(argv.slice(2));
  try {
    await program.parseAsync([...argv.slice(0, 2), ...args]);
    return ExitCode.OK;
  } catch (e) {
    if (e instanceof Reported) return e.exitCode;
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0)
        return ExitCode.OK;
      // Commander printed its own text (with a "did you mean" of its own where it has one).
      const usage = usageError(e, program, args);
      if (json) out.error(usage);
      else if (usage.data && !e.message.includes('Did you mean'))
        io.stderr.write(`(Did you mean ${usage.data['suggestion']}?)\n`);
      return ExitCode.USAGE;
    }
    return out.error(e).exitCode;
  }
}
