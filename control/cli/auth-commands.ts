/** `herd auth`: the broker's identities, credentials and TLS files. */
import type { Command } from 'commander';
import { initAuth, rotatePasswords, writeMosquittoFiles } from '../auth/auth-init.ts';
import { HerdError } from '../../protocol/errors.ts';
import { printJson } from './context.ts';

const list = (value: string, previous: string[] = []) => [...previous, ...value.split(',').map((s) => s.trim()).filter((s) => s !== '')];

export function registerAuthCommands(program: Command): void {
  const auth = program.command('auth').description("the broker's identities: users file, credentials per daemon and operator, TLS certificates");
  auth
    .command('init')
    .description('write (or complete) the users file, one credentials file per identity and, with --tls-name, a CA and the broker certificate; existing passwords and keys are kept')
    .requiredOption('--dir <dir>', 'where the files go (e.g. /etc/herd/auth); created 0700, secrets 0600')
    .option('--compute <hosts>', 'compute host ids, comma-separated (repeatable): one identity each', list, [])
    .option('--operator <names>', 'operator usernames, comma-separated (repeatable; default: operator)', list)
    .option('--control-node <id>', "the control daemon's node id", 'control')
    .option('--tls-name <names>', 'names or IP addresses clients use to reach the broker (repeatable): makes a CA and a broker certificate for them', list)
    .option('--json', 'print JSON')
    .action((opts: { dir: string; compute: string[]; operator?: string[]; controlNode: string; tlsName?: string[]; json?: boolean }) => {
      if (opts.compute.length === 0) throw new HerdError('BAD_USAGE', 'herd auth init needs at least one compute host: --compute h1,h2');
      const files = initAuth({
        dir: opts.dir,
        computeHosts: opts.compute,
        ...(opts.operator === undefined ? {} : { operators: opts.operator }),
        controlNode: opts.controlNode,
        ...(opts.tlsName === undefined ? {} : { tlsNames: opts.tlsName }),
      });
      if (opts.json === true) return printJson(files);
      const lines = [
        `users file: ${files.usersFile} (broker.auth.usersFile of the control daemon)`,
        ...Object.entries(files.credentials).map(([user, file]) => `${files.added.includes(user) ? 'new ' : ''}credentials of ${user}: ${file}`),
        ...(files.tls === undefined ? [] : [`TLS: CA ${files.tls.caFile} (broker.caFile of every daemon, --ca of the CLI); broker certificate ${files.tls.certFile}, key ${files.tls.keyFile} (broker.tls)`]),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  auth
    .command('rotate')
    .description("new passwords for the identities named (users file and credentials files); then reload the control daemon (SIGHUP), which closes their sessions, and copy each credentials file to where its daemon reads it: daemons read it again when they reconnect")
    .argument('[usernames...]', 'identities to rotate (e.g. compute-h1 operator)')
    .requiredOption('--dir <dir>', 'the directory herd auth init wrote')
    .option('--all', 'every identity in the users file')
    .option('--json', 'print JSON')
    .action((usernames: string[], opts: { dir: string; all?: boolean; json?: boolean }) => {
      if (opts.all === true && usernames.length > 0) throw new HerdError('BAD_USAGE', 'herd auth rotate takes identities or --all, not both');
      const rotated = rotatePasswords(opts.dir, opts.all === true ? 'all' : usernames);
      if (opts.json === true) return printJson(rotated);
      const lines = [
        ...Object.entries(rotated.credentials).map(([user, file]) => `new password of ${user}: ${file}`),
        `users file: ${rotated.usersFile}: reload the control daemon to use it (kill -HUP its pid, or systemctl reload herd-control); it closes the rotated identities' sessions`,
        ...(rotated.mosquittoPasswordFile === undefined ? [] : [`Mosquitto password file: ${rotated.mosquittoPasswordFile}: reload Mosquitto (kill -HUP)`]),
        'copy each credentials file to the host whose daemon or operator uses it (ansible does); daemons read it again when they reconnect',
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  auth
    .command('mosquitto')
    .description("write Mosquitto's password file and ACL file from the users file (to run Mosquitto as the broker instead of the embedded one); prints the lines for mosquitto.conf")
    .requiredOption('--dir <dir>', 'the directory herd auth init wrote')
    .option('--json', 'print JSON')
    .action((opts: { dir: string; json?: boolean }) => {
      const files = writeMosquittoFiles(opts.dir);
      if (opts.json === true) return printJson(files);
      // set_tcp_nodelay: Herd's requests and replies are small packets, which Nagle would hold for a delayed ACK (up to 40 ms each).
      process.stdout.write(`password_file ${files.passwordFile}\nacl_file ${files.aclFile}\nset_tcp_nodelay true\n`);
    });
}
