/**
 * The control loop's operator commands: their output's times, the flag combinations they
 * refuse, and (against a real in-process aedes broker and control daemon) what `herd events
 * -f` and `herd status --watch` do when the broker goes away.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startEmbeddedBroker, type EmbeddedBroker } from '../broker/embedded-broker.ts';
import { controlConfigSchema } from '../config.ts';
import { buildControlDaemon, type ControlDaemon } from '../daemon.ts';
import { silentLogger } from '../../protocol/log.ts';
import type { ControlEvent } from '../../protocol/messages.ts';
import type { MigrationRecord } from '../loop/history-store.ts';
import { runMain } from '../../test/support/run-main.ts';
import { describeControlEvent, localDateTime } from './control-commands.ts';

const dir = mkdtempSync(join(tmpdir(), 'herd-control-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('times in the CLI output', () => {
  const tz = process.env.TZ;
  afterEach(() => {
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
  });

  it('an event line shows the local time with milliseconds, as the dashboard does', () => {
    process.env.TZ = 'America/Sao_Paulo'; // UTC-03:00, no daylight saving
    const e = { v: 1, nodeId: 'n', at: '2026-11-28T06:00:00.250Z', kind: 'move', message: 'web h1 -> h2' } as ControlEvent;
    expect(describeControlEvent(e)).toBe('03:00:00.250  move       web h1 -> h2');
  });

  it('a history time is local with its offset', () => {
    process.env.TZ = 'Asia/Kolkata';
    expect(localDateTime('2026-11-28T20:00:00.000Z')).toBe('2026-11-29 01:30:00 +05:30');
    process.env.TZ = 'America/Sao_Paulo';
    expect(localDateTime('2026-11-28T02:00:00.000Z')).toBe('2026-11-27 23:00:00 -03:00');
    process.env.TZ = 'UTC';
    expect(localDateTime('2026-11-28T02:00:00.000Z')).toBe('2026-11-28 02:00:00 +00:00');
  });
});

describe('herd plan refuses what it would ignore', () => {
  const snapshot = join(dir, 'snapshot.json');
  writeFileSync(snapshot, JSON.stringify({ version: 'v1', nowMs: 0, windowSeconds: 30, hosts: [], containers: [], inFlight: [] }));

  it('--save with --snapshot', async () => {
    const r = await runMain(['plan', '--snapshot', snapshot, '--save', join(dir, 'out.json')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^herd: error \[BAD_USAGE\]: --save saves the snapshot the control daemon planned on; with --snapshot there is none/);
    expect(r.out).toBe('');
  });

  it('-c/--config without --snapshot (before any broker is asked)', async () => {
    const r = await runMain(['plan', '-c', join(dir, 'control.yaml'), '--broker', 'mqtt://127.0.0.1:9']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/\[BAD_USAGE\]: -c\/--config takes the policy chain for --snapshot only/);
  });
});

describe('herd events --limit', () => {
  it('accepts at most what the daemon keeps, and says so', async () => {
    expect((await runMain(['events', '--help'])).out.replace(/\s+/g, ' ')).toContain('--limit <n> recent events to print first (at most 1000: what the daemon keeps)');
    const r = await runMain(['events', '--limit', '1001']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/must be an integer from 1 to 1000/);
  });
});

describe('against a control daemon', () => {
  let broker: EmbeddedBroker | undefined;
  let daemon: ControlDaemon | undefined;

  afterEach(async () => {
    await broker?.close().catch(() => undefined);
    await daemon?.close().catch(() => undefined);
    broker = undefined;
    daemon = undefined;
  });

  async function start(history: MigrationRecord[] = []): Promise<string> {
    broker = await startEmbeddedBroker({ host: '127.0.0.1', port: 0 }, silentLogger);
    const stateDir = mkdtempSync(join(dir, 'state-'));
    writeFileSync(join(stateDir, 'history.jsonl'), history.map((record) => `${JSON.stringify({ type: 'started', record })}\n`).join(''));
    const config = controlConfigSchema.parse({ nodeId: 'rc', broker: { embedded: false, url: broker.url }, metrics: { port: 0 }, dashboard: { port: 0 }, loop: { stateDir, evaluationIntervalSeconds: 3600, initialDelaySeconds: 3600, reactive: { enabled: false } } });
    daemon = buildControlDaemon(config, { log: silentLogger });
    await daemon.start();
    return broker.url;
  }

  /** Resolves at the CLI's first write to stdout (call right after runMain: it has replaced the stream's write by then). */
  function firstOutput(): Promise<void> {
    const capture = process.stdout.write;
    return new Promise((resolve) => {
      process.stdout.write = ((...args: Parameters<typeof process.stdout.write>) => {
        resolve();
        return capture.apply(process.stdout, args);
      }) as typeof process.stdout.write;
    });
  }

  it('herd events -f ends with exit 1 and BROKER_UNAVAILABLE (not 0 and silence)', async () => {
    const url = await start();
    const run = runMain(['events', '-f', '--broker', url]);
    await new Promise((r) => setTimeout(r, 1500)); // found the daemon, printed what it has, following
    await broker?.close();
    broker = undefined;
    const r = await run;
    expect(r.threw).toBeUndefined();
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^herd: error \[BROKER_UNAVAILABLE\]: lost the MQTT broker mqtt:\/\/127\.0\.0\.1:\d+: no more events from control rc; run herd events -f again/m);
    expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('herd status --watch says the broker is away once, keeps trying, and ends as --count says with exit 1 and no stack trace', async () => {
    const url = await start();
    const run = runMain(['status', '--watch', '1', '--count', '4', '--json', '--broker', url]);
    await firstOutput();
    await broker?.close();
    broker = undefined;
    const r = await run;
    expect(r.threw).toBeUndefined();
    expect(r.code).toBe(1);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ control: { nodeId: 'rc' } });
    const said = r.err.trim().split('\n');
    expect(said).toHaveLength(2);
    expect(said[0]).toMatch(/^herd: \S+Z \[BROKER_UNAVAILABLE\] lost the MQTT broker mqtt:\/\/127\.0\.0\.1:\d+: reconnecting; trying again every 1 s \(Ctrl-C to stop\)$/);
    expect(said[1]).toMatch(/^herd: error \[BROKER_UNAVAILABLE\]: lost the MQTT broker/);
  });

  it('herd history dates migrations in local time with the offset; --json keeps ISO UTC', async () => {
    const tz = process.env.TZ;
    process.env.TZ = 'Asia/Kolkata';
    try {
      const url = await start([{ migrationId: 'm-1', herdId: 'c0ffee000001', name: 'web', from: 'h1', to: 'h2', manual: true, startedAt: '2026-11-28T20:00:00.000Z' }]);
      const r = await runMain(['history', '--broker', url]);
      expect(r.err).toBe('');
      expect(r.out).toMatch(/^STARTED +CONTAINER/);
      expect(r.out).toMatch(/\n2026-11-29 01:30:00 \+05:30 +web +h1 +h2 +in flight/);
      const json = await runMain(['history', '--json', '--broker', url]);
      expect(JSON.parse(json.out)).toMatchObject([{ startedAt: '2026-11-28T20:00:00.000Z' }]);
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });
});
