import { describe, expect, it } from 'vitest';
import { mountSource } from './host-disk.ts';

const MOUNTINFO = [
  '23 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '412 23 7:3 / /var/lib/herd-lab/h1/docker rw,relatime shared:200 - ext4 /dev/loop3 rw,nobarrier',
  '413 412 0:77 / /var/lib/herd-lab/h1/docker/overlay2/abc/merged rw,relatime - overlay overlay rw,lowerdir=x',
  '414 23 7:4 / /var/lib/herd-lab/h2/docker rw,relatime shared:201 master:7 - ext4 /dev/loop4 rw',
  '415 414 7:5 / /var/lib/herd-lab/h2/docker rw,relatime - ext4 /dev/loop5 rw',
].join('\n');

describe('mountSource', () => {
  it('names the device mounted at a path, with or without optional fields', () => {
    expect(mountSource('/var/lib/herd-lab/h1/docker', MOUNTINFO)).toBe('/dev/loop3');
    expect(mountSource('/', MOUNTINFO)).toBe('/dev/vda');
  });

  it('gives the top mount when several are stacked on a path, and nothing for a plain directory', () => {
    expect(mountSource('/var/lib/herd-lab/h2/docker', MOUNTINFO)).toBe('/dev/loop5');
    expect(mountSource('/var/lib/herd-lab/h3/docker', MOUNTINFO)).toBeUndefined();
    expect(mountSource('/var/lib/herd-lab/h1', MOUNTINFO)).toBeUndefined();
  });
});
