/**
 * The control daemon's web dashboard on the lab, driven by a real headless Chromium
 * (Debian's `chromium`, through playwright-core): the page loads without console errors,
 * shows every host and container where `herd` says they are, and a migration started from
 * the CLI appears on the page as it happens and ends with its downtime; a rolled-back one
 * shows as failed. The actions need the lab operator's credentials. A screenshot is saved
 * as a test artifact (test-artifacts/dashboard.png, or $HERD_TEST_ARTIFACTS).
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialsPath } from '../../control/auth/auth-init.ts';
import type { LabLayout } from '../../control/lab/layout.ts';
import { loadCredentialsFile } from '../../protocol/credentials.ts';
import { COUNTER } from '../support/containers.ts';
import { herd, herdOk, REPO_ROOT } from '../support/herd-cli.ts';
import { readyLab, setFaults } from '../support/lab.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = process.env.HERD_TEST_ARTIFACTS ?? join(REPO_ROOT, 'test-artifacts');

let layout: LabLayout;
// Unique per run: the control daemon remembers the migrations of earlier runs.
const run = Date.now().toString(36).slice(-5);
const [A, B, C] = ['a', 'b', 'c'].map((x) => `dash-${x}-${run}`) as [string, string, string];
let browser: Browser | undefined;
let page: Page;
const consoleErrors: string[] = [];

describe('web dashboard (real Chromium against the lab)', () => {
  beforeAll(async () => {
    // Never skip: a machine without it is not set up for this suite.
    if (!existsSync(CHROMIUM)) throw new Error('chromium not installed: run scripts/setup (Debian package chromium)');
    layout = await readyLab(2);
    await herdOk(['run', '--host', 'h1', '--name', A, 'herd/busybox', ...COUNTER]);
    await herdOk(['run', '--host', 'h1', '--name', B, 'herd/busybox', ...COUNTER]);
    await herdOk(['run', '--host', 'h2', '--name', C, 'herd/busybox', ...COUNTER]);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    // The operator's answer to the browser's basic-auth prompt (asked only by the actions).
    const operator = loadCredentialsFile(credentialsPath(layout.authDir, 'operator'));
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, httpCredentials: { username: operator.username, password: operator.password } });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    await page.goto(layout.dashboardUrl);
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await setFaults(layout, 'h1', []);
    for (const name of [A, B, C]) await herd(['rm', name, '--force']);
  });

  it('shows every host and container where herd says they are, with live metrics', { timeout: 120_000 }, async () => {
    await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 15_000 });
    const hosts = JSON.parse(await herdOk(['hosts', '--json'])) as { hostId: string; state: string }[];
    const containers = JSON.parse(await herdOk(['containers', '--json'])) as { name: string; hostId: string }[];
    expect(containers.map((c) => c.name).sort()).toEqual([A, B, C].sort());
    for (const h of hosts) await page.locator(`[data-host="${h.hostId}"] h3`, { hasText: h.state }).waitFor({ timeout: 15_000 });
    for (const c of containers) await page.locator(`[data-host="${c.hostId}"] [data-container="${c.name}"]`).waitFor({ timeout: 15_000 });
    // Samples arrive live (the monitor's 2 s rounds): figures and one chart per host.
    await page.locator('[data-host="h1"] .figures', { hasText: /CPU \d+ %/ }).waitFor({ timeout: 30_000 });
    await page.locator(`[data-host="h1"] [data-container="${A}"] .fig`, { hasText: /cores/ }).waitFor({ timeout: 30_000 });
    // Charts are drawn up to a second after their host's first samples.
    await expect.poll(() => page.locator('[data-host] .uplot').count(), { timeout: 15_000 }).toBeGreaterThanOrEqual(hosts.length);
  });

  it('shows a migration started from the CLI as it happens, then its downtime, without a reload', { timeout: 180_000 }, async () => {
    const startedAt = Date.now();
    const migration = herd(['migrate', A, '--to', 'h2'], { timeoutMs: 120_000 });
    const row = page.locator(`#migrations tr[data-container="${A}"]`);
    await row.waitFor({ timeout: 10_000 });
    const seenAfterMs = Date.now() - startedAt;
    const r = await migration;
    expect(r.code, r.stderr).toBe(0);
    await page.locator(`#migrations tr[data-container="${A}"] td.downtime`, { hasText: /\d+(\.\d+)? (ms|s)$/ }).waitFor({ timeout: 10_000 });
    expect(await row.locator('td').last().textContent()).toBe('done');
    // The placement follows: dash-a is now in h2's card, and the history lists the move.
    await page.locator(`[data-host="h2"] [data-container="${A}"]`).waitFor({ timeout: 15_000 });
    // h1's list without it is published once the source copy is removed (at the cleanup, after "done").
    await expect.poll(() => page.locator(`[data-host="h1"] [data-container="${A}"]`).count(), { timeout: 15_000 }).toBe(0);
    await page.locator('#history tr', { hasText: A }).waitFor({ timeout: 15_000 });
    process.stdout.write(`dashboard: migration row ${seenAfterMs} ms after "herd migrate" began; downtime shown: ${await row.locator('td.downtime').textContent()}\n`);
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(20_000);
    process.stdout.write(`dashboard screenshot: ${shot}\n`);
  });

  it('shows a rolled-back migration as failed, with its cause', { timeout: 180_000 }, async () => {
    await setFaults(layout, 'h1', ['fail-checkpoint']);
    const r = await herd(['migrate', B, '--to', 'h2'], { timeoutMs: 120_000 });
    expect(r.code).not.toBe(0);
    const row = page.locator(`#migrations tr.failed[data-container="${B}"]`);
    await row.waitFor({ timeout: 15_000 });
    expect(await row.textContent()).toMatch(/ROLLED_BACK|CHECKPOINT_FAILED/);
    await page.locator(`[data-host="h1"] [data-container="${B}"]`).waitFor({ timeout: 15_000 });
  });

  it('acts only for an authenticated operator', { timeout: 60_000 }, async () => {
    const { username, password } = loadCredentialsFile(credentialsPath(layout.authDir, 'operator'));
    const post = (authorization?: string) =>
      fetch(`${layout.dashboardUrl}api/control/pause`, { method: 'POST', headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) }, body: JSON.stringify({ reason: 'a test suite uses the lab (dashboard)' }) });
    expect((await post()).status).toBe(401);
    expect((await post(`Basic ${Buffer.from(`${username}:wrong`).toString('base64')}`)).status).toBe(401);
    const ok = await post(`Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { paused: boolean }).paused).toBe(true);
    await page.locator('#loop', { hasText: 'paused' }).waitFor({ timeout: 15_000 });
    // From the page: drain h2, then cancel the drain (the loop is paused: nothing moves).
    await page.locator('[data-drain="h2"]', { hasText: 'Drain' }).click();
    await page.locator('[data-host="h2"] h3', { hasText: 'draining' }).waitFor({ timeout: 15_000 });
    expect((JSON.parse(await herdOk(['status', '--json'])) as { control: { draining: string[] } }).control.draining).toEqual(['h2']);
    await page.locator('[data-drain="h2"]', { hasText: 'Undrain' }).click();
    await page.locator('[data-drain="h2"]', { hasText: /^Drain$/ }).waitFor({ timeout: 15_000 });
    expect((JSON.parse(await herdOk(['status', '--json'])) as { control: { draining: string[] } }).control.draining).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });
});
