/**
 * The herd command's answers to bad input, in-process (main): the exit code (2 bad usage,
 * 1 otherwise), an error naming what was wrong, never a stack trace. Nothing here needs a
 * broker: the commands fail before connecting, or against a port nobody listens on.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runMain } from '../../test/support/run-main.ts';
import { TINY_MODEL } from '../../policies/forecast-greedy/tiny-model.ts';

const dir = mkdtempSync(join(tmpdir(), 'herd-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (...argv: string[]) => runMain(argv);

/** A TCP server on loopback: `onConnection` decides what a client gets. */
async function server(onConnection: (socket: import('node:net').Socket) => void): Promise<{ url: string; server: Server }> {
  const s = createServer(onConnection);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { url: `mqtt://127.0.0.1:${(s.address() as AddressInfo).port}`, server: s };
}

const SNAPSHOT = JSON.stringify({ version: 'v1', nowMs: 0, windowSeconds: 30, hosts: [], containers: [], inFlight: [] });

describe('herd plan', () => {
  const snapshot = join(dir, 'snapshot.json');
  writeFileSync(snapshot, SNAPSHOT);

  it('plans offline on a snapshot without a control config (the broker\'s rules are not the offline plan\'s)', async () => {
    const r = await run('plan', '--snapshot', snapshot);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^policy oltp-disk on snapshot v1: 0 move\(s\) proposed/);
  });

  it('refuses an inconsistent snapshot, naming every path', async () => {
    const bad = join(dir, 'inconsistent.json');
    const h = (hostId: string) => ({ hostId, online: true, cores: 1, sampleCount: 6, missingRatio: 0 });
    const c = (herdId: string, hostId: string) => ({ herdId, name: herdId, hostId, sampleCount: 6, missingRatio: 0, migrating: false });
    writeFileSync(bad, JSON.stringify({ version: 'v1', nowMs: 0, windowSeconds: 30, hosts: [h('h1'), h('h1')], containers: [c('a', 'h1'), c('a', 'h9')], inFlight: [] }));
    const r = await run('plan', '--snapshot', bad);
    expect(r.code).toBe(1);
    expect(r.err).toContain('is not a valid cluster snapshot: field `hosts.1.hostId`: duplicate host id "h1" (also hosts.0.hostId); field `containers.1.herdId`: duplicate herdId "a" (also containers.0.herdId); field `containers.1.hostId`: no host "h9" in hosts');
  });

  it('with -c takes only the loop: section of the control config, and reports its errors', async () => {
    const config = join(dir, 'control.yaml');
    writeFileSync(config, 'broker: { embedded: true }\nloop: { windowSeconds: 0 }\n');
    const r = await run('plan', '--snapshot', snapshot, '-c', config);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/\[BAD_CONFIG\].*1 error\(s\):\n {2}- field `loop\.windowSeconds`/);
  });

  it('with --policy runs that policy with its arguments in the config\'s chain (forecast-greedy\'s model), else with its defaults', async () => {
    writeFileSync(join(dir, 'model.json'), JSON.stringify(TINY_MODEL));
    const config = join(dir, 'forecast.yaml');
    writeFileSync(config, 'loop: { policies: [{ policy: forecast-greedy, args: { model: model.json } }] }\n');
    const r = await run('plan', '--snapshot', snapshot, '-c', config, '--policy', 'forecast-greedy');
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^policy forecast-greedy on snapshot v1: 0 move\(s\) proposed/);
    expect(r.out).not.toContain('BAD_POLICY_ARGS');
    const without = await run('plan', '--snapshot', snapshot, '--policy', 'forecast-greedy');
    expect(without.out).toMatch(/error \[BAD_POLICY_ARGS\] forecast-greedy: .*needs a trained model/);
  });

  it.each([
    [join(dir, 'absent', 'x.json'), /--save .*absent\/x\.json: directory .*absent does not exist/],
    [dir, /--save .* is a directory: name a file/],
  ])('checks the --save file (%s) before asking the control daemon', async (file, message) => {
    const r = await run('plan', '--broker', 'mqtt://127.0.0.1:9', '--save', file);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).not.toMatch(/BROKER_UNAVAILABLE|\n {4}at /);
  });
});

describe('option values', () => {
  it.each([
    [['events', '--limit', '100000'], /'--limit <n>' argument '100000' is invalid\. must be an integer from 1 to 1000$/m],
    [['history', '--limit', '1000000'], /'--limit <n>' argument '1000000' is invalid\. must be an integer from 1 to 100000/],
    [['control', '--port', 'abc'], /'--port <port>' argument 'abc' is invalid\. must be a port number from 0 to 65535/],
    [['control', '--port', '70000'], /'--port <port>' argument '70000' is invalid/],
    [['hosts', '--broker', 'notaurl'], /\[BAD_USAGE\]: --broker "notaurl" is not a URL \(expected mqtt:\/\/host:port/],
  ])('herd %j: bad usage, named, no stack trace', async (argv, message) => {
    const r = await run(...argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).not.toMatch(/\n {4}at /);
  });

  it('states the --limit maximum in --help', async () => {
    expect((await run('events', '--help')).out.replace(/\s+/g, ' ')).toContain('--limit <n> recent events to print first (at most 1000: what the daemon keeps)');
    expect((await run('history', '--help')).out).toMatch(/--limit <n> .*at most 100000\)/);
  });

  it('takes --broker, --credentials and --ca after metrics top and logs, as after every broker command', async () => {
    for (const command of [['metrics', 'top'], ['logs', 'web', '--dir', dir]]) {
      const r = await run(...command, '--broker', 'mqtt://127.0.0.1:9', '--credentials', join(dir, 'absent.yaml'), '--ca', join(dir, 'absent.pem'));
      expect(r.err).not.toMatch(/unknown option/);
      expect(r.err).toMatch(/absent\.yaml/); // it got as far as reading the credentials
    }
  });
});

describe('an unreachable broker', () => {
  it('says what to do: start a control daemon or name the broker', async () => {
    const { url, server: s } = await server(() => undefined);
    await new Promise<void>((r) => s.close(() => r())); // nobody listens on its port now
    const r = await run('hosts', '--broker', url);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/\[BROKER_UNAVAILABLE\]: cannot connect to MQTT broker .*ECONNREFUSED.*\. Is a control daemon running \(herd lab up, or herd control\)\? Otherwise name the broker with --broker URL or \$HERD_BROKER/);
  });

  it('suggests mqtts:// when the broker closes a plain connection at once (a TLS listener does)', async () => {
    const { url, server: s } = await server((socket) => socket.destroy());
    try {
      const r = await run('hosts', '--broker', url);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/connection closed \(the broker closed the connection at once: if it speaks TLS, use mqtts:\/\/\)/);
      expect(r.err).not.toMatch(/Is a control daemon running/);
    } finally {
      s.close();
    }
  });
});
