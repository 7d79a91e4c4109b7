/**
 * The page's script (public/dashboard.js) run in a bare VM context with a minimal stand-in
 * for the DOM: how it applies the server's updates to its state (the browser's rendering is
 * test/e2e/dashboard.test.ts's business).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createContext, runInContext, type Context } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, type HostStatus } from '../../protocol/messages.ts';
import { LiveState, type DashboardUpdate } from './live-state.ts';

const SCRIPT = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'public', 'dashboard.js'), 'utf8');

class FakeElement {
  children: unknown[] = [];
  textContent = '';
  className = '';
  style = { cssText: '' };
  constructor(private readonly byId: Map<string, FakeElement>) {}
  setAttribute(k: string, v: string) {
    if (k === 'id') this.byId.set(v, this);
  }
  append(...c: unknown[]) {
    this.children.push(...c);
  }
  replaceChildren(...c: unknown[]) {
    this.children = c;
  }
  replaceWith() {}
  addEventListener() {}
  querySelector() {
    return new FakeElement(this.byId);
  }
  get isConnected() {
    return true;
  }
  get clientWidth() {
    return 400;
  }
}

/** Loads the page's script; `send` delivers a server-sent update as the EventSource would. */
function page(): { send(u: DashboardUpdate): void; eval(expr: string): unknown; element(id: string): FakeElement } {
  const byId = new Map<string, FakeElement>();
  const listeners = new Map<string, (m: { data: string }) => void>();
  const document = {
    createElement: () => new FakeElement(byId),
    getElementById: (id: string) => byId.get(id) ?? byId.set(id, new FakeElement(byId)).get(id),
    querySelector: () => new FakeElement(byId),
  };
  const ctx: Context = createContext({
    document,
    window: { addEventListener() {} },
    Node: FakeElement,
    EventSource: class {
      addEventListener(type: string, f: (m: { data: string }) => void) {
        listeners.set(type, f);
      }
    },
    uPlot: class {
      setData() {}
      destroy() {}
    },
    fetch: async () => ({ ok: false }),
    setTimeout: () => 0,
    console,
  });
  runInContext(SCRIPT, ctx);
  return {
    send: (u) => listeners.get('update')?.({ data: JSON.stringify(u) }),
    eval: (expr) => JSON.parse(JSON.stringify(runInContext(expr, ctx))),
    element: (id) => document.getElementById(id) as FakeElement,
  };
}

const host = (hostId: string): HostStatus => ({ v: PROTOCOL_VERSION, hostId, state: 'online', since: '2026-11-28T06:00:00.000Z' });

describe('the dashboard page', () => {
  it('marks a host stale as its samples say, live (the server sends stale with each sample)', () => {
    const p = page();
    const live = new LiveState();
    live.subscribe((u) => p.send(u));
    live.placement([host('h1')], []);
    live.host({ v: PROTOCOL_VERSION, hostId: 'h1', at: new Date().toISOString(), stale: false, cpuUtil: 0.5 });
    expect(p.element('figures-h1').textContent).toBe('CPU 50 % · disk –');
    live.host({ v: PROTOCOL_VERSION, hostId: 'h1', at: new Date().toISOString(), stale: true, staleReason: 'pmproxy did not answer' } as never);
    expect(p.element('figures-h1').textContent).toContain('· stale');
    expect(p.eval('state.latest.hosts.h1.stale')).toBe(true);
  });

  it('drops the series of hosts and containers that left with the placement', () => {
    const p = page();
    const c = { herdId: 'c1', name: 'web', hostId: 'h2', dockerId: 'd', image: 'i', state: 'running' as const };
    p.send({ type: 'placement', hosts: [host('h1'), host('h2')], containers: [c] });
    p.send({ type: 'host-metrics', hostId: 'h1', t: 1, cpu: 0.1, disk: 1, memoryUsedBytes: null, stale: false });
    p.send({ type: 'host-metrics', hostId: 'h2', t: 1, cpu: 0.2, disk: 2, memoryUsedBytes: null, stale: false });
    p.send({ type: 'container-metrics', hostId: 'h2', t: 1, samples: [{ herdId: 'c1', cpu: 0.1, disk: 1, memoryBytes: null }] });
    expect(p.eval('Object.keys(state.series.hosts)')).toEqual(['h1', 'h2']);
    p.send({ type: 'placement', hosts: [host('h1')], containers: [] });
    expect(p.eval('Object.keys(state.series.hosts)')).toEqual(['h1']);
    expect(p.eval('Object.keys(state.latest.hosts)')).toEqual(['h1']);
    expect(p.eval('Object.keys(state.series.containers)')).toEqual([]);
  });
});
