import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { securityChecks } from './security-checks.ts';

const dir = mkdtempSync(join(tmpdir(), 'herd-security-checks-'));
function config(name: string, text: string, mode = 0o600): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

describe('herd doctor security checks', () => {
  it('passes a control daemon with users, TLS and its own credentials, and compute/monitor configs with credentials over mqtts', () => {
    const checks = securityChecks([
      { kind: 'control', file: config('control.yaml', 'broker: { host: 10.0.0.1, auth: { usersFile: /etc/herd/auth/users.yaml }, credentialsFile: /etc/herd/auth/control.credentials.yaml, tls: { certFile: a.pem, keyFile: a.key } }') },
      { kind: 'compute', file: config('compute.yaml', 'broker: { url: "mqtts://10.0.0.1:1883", credentialsFile: /etc/herd/c.yaml, caFile: /etc/herd/ca.pem }') },
      { kind: 'monitor', file: config('monitor.yaml', 'broker: { url: "mqtt://127.0.0.1:1883", credentialsFile: /etc/herd/m.yaml }\nhosts: [{ id: h1, pmproxyUrl: "http://127.0.0.1:44322" }]') },
    ]);
    expect(checks.map((c) => [c.ok, c.detail])).toEqual([
      [true, 'authenticated, encrypted, file mode 600'],
      [true, 'authenticated, encrypted, file mode 600'],
      [true, 'authenticated, encrypted, file mode 600'],
    ]);
  });

  it('names every problem: anonymous broker, plain TCP, all interfaces, no credentials, inline password, readable file, external broker', () => {
    const [control, compute, external, broken] = securityChecks([
      { kind: 'control', file: config('open.yaml', 'broker: { host: 0.0.0.0, auth: { allowAnonymous: true } }', 0o644) },
      { kind: 'compute', file: config('c2.yaml', 'broker: { url: "mqtt://10.0.0.1:1883", username: h1, password: secret }') },
      { kind: 'control', file: config('ext.yaml', 'broker: { embedded: false, url: "mqtts://broker:8883", credentialsFile: /x.yaml }') },
      { kind: 'monitor', file: config('bad.yaml', 'broker: { colour: red }') },
    ]);
    expect(control?.ok).toBe(false);
    for (const p of ['mode 644', 'admits anonymous clients', 'plain TCP', 'every interface']) expect(control?.detail).toContain(p);
    for (const p of ['plain TCP', 'password in the config file']) expect(compute?.detail).toContain(p);
    expect(external?.detail).toMatch(/external broker mqtts:\/\/broker:8883: herd doctor cannot see its rules/);
    expect(broken?.detail).toMatch(/does not load: [^]*colour/);
  });

  it('skips configs that do not exist', () => {
    expect(securityChecks([{ kind: 'control', file: join(dir, 'absent.yaml') }])).toEqual([]);
  });
});
