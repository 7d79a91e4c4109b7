// Herd's dashboard: loads /api/state once, then applies the server-sent updates of
// /api/events (live-state.ts) without reloading. Plain browser JavaScript (no build step);
// text from the cluster only ever goes into the page as text nodes.
'use strict';

const SERIES_POINTS = 300;
const state = { hosts: [], containers: [], latest: { hosts: {}, containers: {} }, series: { hosts: {}, containers: {} }, migrations: [], history: [], events: [], control: null, forecast: [] };
const charts = new Map(); // key → uPlot
let chartsDirty = false;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

const fmt = {
  pct: (v) => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(0)} %`),
  cores: (v) => (v === null || v === undefined ? '–' : `${v.toFixed(2)} cores`),
  ops: (v) => (v === null || v === undefined ? '–' : `${v.toFixed(0)} ops/s`),
  ms: (v) => (v === null || v === undefined ? '' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`),
  mib: (v) => (v === null || v === undefined ? '' : `${(v / 1048576).toFixed(1)} MiB`),
  time: (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : ''),
};

// ------------------------------------------------------------------ series
function pushPoint(series, t, cpu, disk) {
  series.t.push(t);
  series.cpu.push(cpu);
  series.disk.push(disk);
  if (series.t.length > SERIES_POINTS) {
    series.t.shift();
    series.cpu.shift();
    series.disk.shift();
  }
}

/** uPlot data for several series sampled at different times: the union of their times, null where one has no sample. */
function aligned(list, key) {
  const times = [...new Set(list.flatMap((s) => s.t))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = list.map((s) => {
    const col = new Array(times.length).fill(null);
    s.t.forEach((t, i) => (col[index.get(t)] = s[key][i]));
    return col;
  });
  return [times, ...columns];
}

/** 12500 → 12.5k. */
const short = (x) => (x === null ? '' : Math.abs(x) >= 1e6 ? `${+(x / 1e6).toFixed(1)}M` : Math.abs(x) >= 1e3 ? `${+(x / 1e3).toFixed(1)}k` : `${+x.toFixed(2)}`);

const PALETTE = ['#1f6feb', '#d97706', '#16a34a', '#dc2626', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#92400e', '#475569'];

function chart(key, target, series, data, axes) {
  const old = charts.get(key);
  const signature = JSON.stringify(series.map((s) => s.label));
  if (old && old.root.isConnected && old._signature === signature) {
    old.setData(data);
    return;
  }
  if (old) old.destroy();
  const width = Math.max(240, target.clientWidth || 400);
  const u = new uPlot(
    {
      width,
      height: 120,
      legend: { show: true, live: false },
      cursor: { show: false },
      scales: { x: { time: true } },
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: s.color || PALETTE[i % PALETTE.length], width: 1.5, scale: s.scale || 'y', spanGaps: true, points: { show: false } }))],
      axes: axes || [{}, { size: 50 }],
    },
    data,
    target,
  );
  u._signature = signature;
  charts.set(key, u);
}

function redrawCharts() {
  chartsDirty = false;
  for (const h of state.hosts) {
    const hostTarget = document.getElementById(`chart-host-${h.hostId}`);
    const s = state.series.hosts[h.hostId];
    if (hostTarget && s) {
      chart(`host-${h.hostId}`, hostTarget, [{ label: 'CPU %', color: '#1f6feb' }, { label: 'disk ops/s', color: '#d97706', scale: 'ops' }], [s.t, s.cpu.map((v) => (v === null ? null : v * 100)), s.disk], [{}, { size: 52, values: (u, v) => v.map((x) => `${x}%`) }, { side: 1, scale: 'ops', size: 50, grid: { show: false }, values: (u, v) => v.map(short) }]);
    }
    const ctTarget = document.getElementById(`chart-containers-${h.hostId}`);
    const here = state.containers.filter((c) => c.hostId === h.hostId && state.series.containers[c.herdId]);
    if (ctTarget) {
      if (here.length === 0) {
        charts.get(`containers-${h.hostId}`)?.destroy();
        charts.delete(`containers-${h.hostId}`);
        ctTarget.replaceChildren(el('div', { class: 'empty' }, 'no container samples yet'));
      } else {
        if (ctTarget.querySelector('.empty')) ctTarget.replaceChildren();
        chart(`containers-${h.hostId}`, ctTarget, here.map((c) => ({ label: c.name })), aligned(here.map((c) => state.series.containers[c.herdId]), 'cpu'));
      }
    }
  }
}

function chartsLater() {
  if (chartsDirty) return;
  chartsDirty = true;
  setTimeout(redrawCharts, 1000);
}

// ------------------------------------------------------------------ rendering
/** Not ended yet: running, or in doubt (frozen) until its source announces the end. */
function isOpen(m) {
  return m.state === 'running' || m.state === 'in-doubt';
}

function activeMigration(herdId) {
  return state.migrations.find((m) => m.herdId === herdId && isOpen(m));
}

function renderHosts() {
  const root = document.getElementById('hosts');
  for (const c of charts.values()) c.destroy();
  charts.clear();
  if (state.hosts.length === 0) {
    root.replaceChildren(el('div', { class: 'empty' }, 'no compute host has reported yet'));
    return;
  }
  root.replaceChildren(
    ...state.hosts.map((h) => {
      const here = state.containers.filter((c) => c.hostId === h.hostId);
      const draining = state.control && state.control.draining && state.control.draining.includes(h.hostId);
      return el(
        'div',
        { class: `host ${h.state}`, 'data-host': h.hostId },
        el(
          'h3',
          {},
          h.hostId,
          el('span', { class: 'state' }, h.state + (draining ? ' · draining' : '')),
          el('span', { class: 'state' }, h.cpus ? `CPUs ${h.cpus.join(',')}` : ''),
          state.actions ? drainButton(h.hostId, draining) : null,
        ),
        el('div', { class: 'figures', id: `figures-${h.hostId}` }, hostFigures(h.hostId)),
        el(
          'div',
          { class: 'containers' },
          here.length === 0 ? el('span', { class: 'empty' }, 'no containers') : here.map(containerChip),
        ),
        el('div', { class: 'chart-title' }, 'host CPU and disk'),
        el('div', { id: `chart-host-${h.hostId}` }),
        el('div', { class: 'chart-title' }, 'CPU per container (cores)'),
        el('div', { id: `chart-containers-${h.hostId}` }),
      );
    }),
  );
  redrawCharts();
}

function drainButton(hostId, draining) {
  const b = el('button', { type: 'button', class: 'drain', 'data-drain': hostId }, draining ? 'Undrain' : 'Drain');
  b.addEventListener('click', () => act('/api/control/drain', { host: hostId, cancel: Boolean(draining) }));
  return b;
}

function hostFigures(hostId) {
  const l = state.latest.hosts[hostId];
  if (!l) return 'no samples yet';
  return `CPU ${fmt.pct(l.cpu)} · disk ${fmt.ops(l.disk)}${l.stale ? ' · stale' : ''}`;
}

function containerChip(c) {
  const l = state.latest.containers[c.herdId];
  const m = activeMigration(c.herdId) || (c.migrationId ? { phase: 'migrating' } : undefined);
  return el(
    'span',
    { class: `container${m ? ' migrating' : ''}`, 'data-container': c.name, id: `ct-${c.herdId}`, title: `${c.image} · ${c.state}${c.ip ? ` · ${c.ip}` : ''}` },
    c.name,
    el('span', { class: 'fig' }, l ? `${fmt.cores(l.cpu)} · ${fmt.ops(l.disk)}` : c.state),
    m ? el('span', { class: 'mig' }, `⇄ ${m.phase}`) : null,
  );
}

function renderMigrations() {
  const body = document.querySelector('#migrations tbody');
  if (state.migrations.length === 0) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 11, class: 'empty' }, 'no migration since the control daemon started')));
    return;
  }
  body.replaceChildren(
    ...state.migrations.map((m) => {
      const share = m.totalBytes ? Math.min(1, (m.bytes || 0) / m.totalBytes) : undefined;
      const progress = m.state === 'running' && m.bytes !== undefined ? el('span', {}, share === undefined ? '' : el('span', { class: 'bar' }, el('i', { style: `width:${(share * 100).toFixed(0)}%` })), ` ${fmt.mib(m.bytes)}`) : m.bytes !== undefined ? fmt.mib(m.bytes) : '';
      return el(
        'tr',
        { class: m.state, 'data-migration': m.migrationId, 'data-container': m.container },
        el('td', {}, fmt.time(m.startedAt)),
        el('td', {}, m.container),
        el('td', {}, `${m.from} → ${m.to}`),
        el('td', {}, m.phase),
        el('td', {}, progress),
        el('td', { class: 'num' }, fmt.ms(m.phases.precopy)),
        el('td', { class: 'num' }, fmt.ms(m.phases.checkpoint)),
        el('td', { class: 'num' }, fmt.ms(m.phases.transfer)),
        el('td', { class: 'num' }, fmt.ms(m.phases.restore)),
        el('td', { class: 'num downtime' }, fmt.ms(m.downtimeMs)),
        el('td', { class: `outcome-${m.state}`, title: m.error || '' }, m.state + (m.error ? ` (${errorCodes(m.error)})` : '')),
      );
    }),
  );
}

/** "ROLLED_BACK: … [CHECKPOINT_FAILED: …] …" → "ROLLED_BACK, CHECKPOINT_FAILED" (the whole message is the cell's title). */
function errorCodes(message) {
  const codes = [...new Set(message.match(/\b[A-Z][A-Z_]{3,}(?=:)/g) || [])];
  return codes.length > 0 ? codes.join(', ') : message.slice(0, 80);
}

function renderHistory() {
  const body = document.querySelector('#history tbody');
  const rows = [...state.history].reverse();
  if (rows.length === 0) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 7, class: 'empty' }, state.control ? 'no moves yet' : 'the control loop is off')));
    return;
  }
  body.replaceChildren(
    ...rows.map((r) =>
      el(
        'tr',
        { 'data-history': r.migrationId },
        el('td', {}, fmt.time(r.startedAt)),
        el('td', {}, r.name),
        el('td', {}, `${r.from} → ${r.to}`),
        el('td', { class: `outcome-${r.outcome || 'running'}` }, r.outcome || 'running'),
        el('td', { class: 'num' }, fmt.ms(r.timings && r.timings.downtimeMs)),
        el('td', {}, r.manual ? 'manual' : r.policy || ''),
        el('td', { title: r.error ? `${r.error.code}: ${r.error.message}` : '' }, r.reason || '', r.error ? el('div', { class: 'outcome-failed' }, errorCodes(`${r.error.code}: ${r.error.message}`)) : null),
      ),
    ),
  );
}

function renderLoop() {
  const badge = document.getElementById('loop');
  const c = state.control;
  if (!c) {
    badge.textContent = 'loop: off';
    badge.className = 'badge';
    return;
  }
  badge.textContent = `loop: ${c.mode}${c.paused ? ' · paused' : ''} · ${c.policies.join(' → ')} · ${c.evaluations} evaluations${c.nextEvaluationAt && !c.paused ? ` · next ${fmt.time(c.nextEvaluationAt)}` : ''}`;
  badge.className = `badge ${c.paused ? 'paused' : 'on'}`;
  badge.title = c.pausedReason || '';
  const plan = c.lastPlan;
  const root = document.getElementById('plan');
  document.getElementById('plan-meta').textContent = plan ? `${plan.policy} · ${plan.trigger} evaluation at ${fmt.time(c.lastEvaluationAt)} · ${plan.proposed} proposed, ${plan.allowed} allowed, ${plan.sent} sent` : '';
  if (!plan) {
    root.replaceChildren(el('div', { class: 'empty' }, 'no evaluation yet'));
    return;
  }
  root.replaceChildren(
    ...(plan.moves.length === 0 ? [el('div', { class: 'empty' }, 'no move')] : plan.moves.map((m) => el('div', { class: 'plan-move' }, el('b', {}, `${m.name}: ${m.from} → ${m.to}`), ' ', el('code', {}, m.reasonCode), ' ', m.reason))),
    ...plan.annotations.slice(0, 30).map((a) => el('div', { class: 'annotation' }, el('code', {}, a.code), ` ${a.message}`)),
    ...(plan.annotations.length > 30 ? [el('div', { class: 'annotation' }, `… ${plan.annotations.length - 30} more (herd plan)`)] : []),
  );
}

function renderForecast() {
  const root = document.getElementById('forecast');
  if (!state.forecast || state.forecast.length === 0) {
    root.replaceChildren(el('div', { class: 'empty' }, 'no forecast model loaded (the forecast-greedy policy with a model trained by "herd forecast train")'));
    return;
  }
  root.replaceChildren(
    ...state.forecast.map((f) =>
      el(
        'div',
        {},
        el('div', {}, `${f.policy}: a model of ${f.features} features; gain importance:`),
        el('div', { class: 'importance' }, f.importance.flatMap((i) => [el('span', {}, i.feature), el('span', { class: 'bar' }, el('i', { style: `width:${(i.share * 100).toFixed(0)}%` })), el('span', {}, `${(i.share * 100).toFixed(1)} %`)])),
      ),
    ),
  );
}

function renderEvents() {
  const root = document.getElementById('events');
  const rows = [...state.events].reverse().slice(0, 100);
  root.replaceChildren(...(rows.length === 0 ? [el('li', { class: 'empty' }, 'no events yet')] : rows.map((e) => el('li', { 'data-kind': e.kind }, el('time', {}, fmt.time(e.at)), `${e.kind}: ${e.message}`))));
}

/** Herd id → container summary, rebuilt with the placement (sample rounds look containers up by id). */
let containerById = new Map();

function renderAll() {
  document.getElementById('node').textContent = `control ${state.nodeId}`;
  document.getElementById('actions').hidden = !state.actions;
  renderLoop();
  renderHosts();
  renderMigrations();
  renderHistory();
  renderForecast();
  renderEvents();
}

// ------------------------------------------------------------------ data
async function loadState() {
  const res = await fetch('/api/state', { cache: 'no-store' });
  if (!res.ok) throw new Error(`GET /api/state: ${res.status}`);
  Object.assign(state, await res.json());
  containerById = new Map(state.containers.map((c) => [c.herdId, c]));
}

let refreshTimer;
/** The loop's status, plan and history change with its events: fetched again, at most twice a second. */
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = undefined;
    try {
      const res = await fetch('/api/state', { cache: 'no-store' });
      if (!res.ok) return;
      const s = await res.json();
      const drains = JSON.stringify(state.control && state.control.draining);
      Object.assign(state, { control: s.control, history: s.history, events: s.events, forecast: s.forecast });
      renderLoop();
      renderHistory();
      renderForecast();
      renderEvents();
      if (JSON.stringify(s.control && s.control.draining) !== drains) renderHosts();
    } catch (err) {
      console.warn('could not refresh the state', err);
    }
  }, 500);
}

function apply(u) {
  switch (u.type) {
    case 'host-metrics': {
      const s = (state.series.hosts[u.hostId] ||= { t: [], cpu: [], disk: [] });
      pushPoint(s, u.t, u.cpu, u.disk);
      state.latest.hosts[u.hostId] = { cpu: u.cpu, disk: u.disk, memoryUsedBytes: u.memoryUsedBytes, stale: u.stale === true };
      const f = document.getElementById(`figures-${u.hostId}`);
      if (f) f.textContent = hostFigures(u.hostId);
      chartsLater();
      break;
    }
    case 'container-metrics':
      for (const c of u.samples) {
        const s = (state.series.containers[c.herdId] ||= { t: [], cpu: [], disk: [] });
        pushPoint(s, u.t, c.cpu, c.disk);
        state.latest.containers[c.herdId] = { cpu: c.cpu, disk: c.disk, memoryBytes: c.memoryBytes };
        const chip = document.getElementById(`ct-${c.herdId}`);
        const summary = containerById.get(c.herdId);
        if (chip && summary) chip.replaceWith(containerChip(summary));
      }
      chartsLater();
      break;
    case 'placement': {
      state.hosts = u.hosts;
      state.containers = u.containers;
      containerById = new Map(state.containers.map((c) => [c.herdId, c]));
      // As the server does (live-state.ts placement): what left takes its series along (renderHosts rebuilds the charts).
      const hostIds = new Set(state.hosts.map((h) => h.hostId));
      for (const id of Object.keys(state.series.hosts)) {
        if (hostIds.has(id)) continue;
        delete state.series.hosts[id];
        delete state.latest.hosts[id];
      }
      for (const id of Object.keys(state.series.containers)) {
        if (containerById.has(id)) continue;
        delete state.series.containers[id];
        delete state.latest.containers[id];
      }
      renderHosts();
      break;
    }
    case 'migration': {
      const i = state.migrations.findIndex((m) => m.migrationId === u.migration.migrationId);
      if (i >= 0) state.migrations[i] = u.migration;
      else state.migrations.unshift(u.migration);
      state.migrations.sort((a, b) => (isOpen(a) !== isOpen(b) ? (isOpen(a) ? -1 : 1) : b.startedAt.localeCompare(a.startedAt)));
      renderMigrations();
      const chip = document.getElementById(`ct-${u.migration.herdId}`);
      const summary = containerById.get(u.migration.herdId);
      if (chip && summary) chip.replaceWith(containerChip(summary));
      if (u.migration.state !== 'running') refreshSoon();
      break;
    }
    case 'control':
      state.events.push(u.event);
      if (state.events.length > 200) state.events.shift();
      renderEvents();
      refreshSoon();
      break;
    default:
  }
}

function connect() {
  const live = document.getElementById('live');
  const source = new EventSource('/api/events');
  source.addEventListener('open', async () => {
    live.textContent = 'live';
    live.className = 'badge on';
    // After a reconnect, what was missed comes with a fresh state.
    try {
      await loadState();
      renderAll();
    } catch (err) {
      console.warn('could not load the state', err);
    }
  });
  source.addEventListener('update', (m) => apply(JSON.parse(m.data)));
  source.addEventListener('error', () => {
    live.textContent = 'reconnecting…';
    live.className = 'badge off';
  });
}

async function act(path, body) {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body || {}) });
  if (!res.ok) {
    const e = await res.json().catch(() => ({}));
    alert(`${path}: ${(e.error && e.error.message) || res.status}`);
  }
  refreshSoon();
}

document.getElementById('pause').addEventListener('click', () => act('/api/control/pause', { reason: 'paused from the dashboard' }));
document.getElementById('resume').addEventListener('click', () => act('/api/control/resume'));
window.addEventListener('resize', () => renderHosts());
connect();
