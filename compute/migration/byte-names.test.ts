import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeName, encodeName, fsPath, hasEscapedBytes } from './byte-names.ts';

describe('file names as bytes (surrogateescape)', () => {
  it('gives any bytes back', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        expect(encodeName(decodeName(Buffer.from(bytes))).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it('keeps a valid UTF-8 name the ordinary string, U+FFFD and astral characters included', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (name) => {
        expect(decodeName(Buffer.from(name, 'utf8'))).toBe(name);
        expect(encodeName(name).equals(Buffer.from(name, 'utf8'))).toBe(true);
        expect(hasEscapedBytes(name)).toBe(false);
      }),
      { numRuns: 2000 },
    );
    expect(decodeName(Buffer.from('a\uFFFDb 日本 😀'))).toBe('a\uFFFDb 日本 😀');
  });

  it('escapes each byte that is not part of valid UTF-8 as Python does, and reads them back', () => {
    const cases: [number[], string][] = [
      [[0x63, 0x61, 0x66, 0xe9], 'caf\uDCE9'], // Latin-1
      [[0xc0, 0x80], '\uDCC0\uDC80'], // overlong NUL
      [[0xed, 0xa0, 0x80], '\uDCED\uDCA0\uDC80'], // a surrogate encoded
      [[0xf4, 0x90, 0x80, 0x80], '\uDCF4\uDC90\uDC80\uDC80'], // above U+10FFFF
      [[0xe6, 0x97], '\uDCE6\uDC97'], // cut short
      [[0xf0, 0x9f, 0x98, 0x80, 0xff], '😀\uDCFF'], // a pair, then a byte
      [[0xef, 0xbf, 0xbd, 0xfe], '\uFFFD\uDCFE'], // a real U+FFFD, then a byte
    ];
    for (const [bytes, name] of cases) {
      expect(decodeName(Buffer.from(bytes))).toBe(name);
      expect(encodeName(name).equals(Buffer.from(bytes))).toBe(true);
      const python = spawnSync('python3', ['-c', 'import json, sys; print(json.dumps(bytes.fromhex(sys.argv[1]).decode("utf-8", "surrogateescape")))', Buffer.from(bytes).toString('hex')], { encoding: 'utf8' });
      expect(python.status, python.stderr).toBe(0);
      expect(JSON.parse(python.stdout) as string).toBe(name);
    }
  });

  it('agrees with Python on random bytes', () => {
    const samples = fc.sample(fc.uint8Array({ maxLength: 24 }), { numRuns: 2000, seed: 29 }).map((b) => Buffer.from(b));
    // Bytes made mostly of UTF-8's lead and continuation bytes, where the decoders could differ.
    samples.push(...fc.sample(fc.array(fc.constantFrom(0x41, 0x80, 0x9f, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff), { maxLength: 12 }), { numRuns: 2000, seed: 30 }).map((b) => Buffer.from(b)));
    const python = spawnSync('python3', ['-c', 'import json, sys\nfor line in sys.stdin: print(json.dumps(bytes.fromhex(line.strip()).decode("utf-8", "surrogateescape")))'], { input: samples.map((b) => `${b.toString('hex')}\n`).join(''), encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
    expect(python.status, python.stderr).toBe(0);
    const theirs = python.stdout.trim().split('\n').map((l) => JSON.parse(l) as string);
    expect(theirs).toHaveLength(samples.length);
    for (const [i, b] of samples.entries()) expect(decodeName(b), b.toString('hex')).toBe(theirs[i]);
  });

  it('names such a file for node:fs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'herd-byte-names-'));
    try {
      writeFileSync(fsPath(join(dir, 'caf\uDCE9')), 'x');
      expect(fsPath(join(dir, 'plain'))).toBe(join(dir, 'plain'));
      expect(readdirSync(dir, { encoding: 'buffer' }).map(decodeName)).toEqual(['caf\uDCE9']);
      expect(readdirSync(dir, { encoding: 'buffer' })[0]?.equals(Buffer.from([0x63, 0x61, 0x66, 0xe9]))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
