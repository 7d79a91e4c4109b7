import { describe, expect, it } from 'vitest';
import { containerSpecSchema } from '../../protocol/messages.ts';
import { dockerSettingsOf } from './cluster-commands.ts';

describe("herd run's Docker settings", () => {
  it('become the spec a migration carries', () => {
    const spec = dockerSettingsOf({ hostname: 'web-1', workdir: '/srv', entrypoint: '/bin/sh', publish: ['8080:80', '127.0.0.1:5353:53/udp', ':9000'], capAdd: ['net_bind_service'], capDrop: ['CAP_NET_RAW'], tmpfs: ['/run', '/cache:size=8m,mode=1777'], readOnly: true, init: true });
    expect(spec).toEqual({
      hostname: 'web-1',
      workingDir: '/srv',
      entrypoint: ['/bin/sh'],
      ports: [
        { containerPort: 80, protocol: 'tcp', hostPort: '8080' },
        { containerPort: 53, protocol: 'udp', hostIp: '127.0.0.1', hostPort: '5353' },
        { containerPort: 9000, protocol: 'tcp' },
      ],
      capAdd: ['NET_BIND_SERVICE'],
      capDrop: ['CAP_NET_RAW'],
      tmpfs: { '/run': '', '/cache': 'size=8m,mode=1777' },
      readOnlyRootfs: true,
      init: true,
    });
    expect(containerSpecSchema.safeParse({ name: 'web', image: 'herd/busybox', ...spec }).success).toBe(true);
    expect(dockerSettingsOf({})).toEqual({});
  });

  it.each([
    [{ publish: ['80'] }, /--publish "80": expected \[ip:\]hostPort:containerPort/],
    [{ publish: ['8080:70000'] }, /--publish "8080:70000"/],
    [{ publish: ['8080:80/icmp'] }, /--publish "8080:80\/icmp"/],
    [{ hostname: '-bad' }, /--hostname "-bad": not a host name/],
    [{ workdir: 'srv' }, /--workdir "srv": must be an absolute path/],
    [{ capAdd: ['NET ADMIN'] }, /--cap-add "NET ADMIN": not a capability name/],
    [{ tmpfs: ['run'] }, /--tmpfs "run": expected \/path/],
  ])('%j: bad usage, named', (opts, message) => {
    expect(() => dockerSettingsOf(opts)).toThrow(message);
  });
});
