/**
 * File names as the kernel gives them: bytes, not necessarily UTF-8 (`caf\xe9` from a Latin-1
 * application). A container's upper dir may hold any, and the filesystem pre-copy must name
 * each one exactly: to tell its changes, to have tar archive it, to delete it on the target.
 *
 * A name is carried in a JS string the way Python's `surrogateescape` carries it: valid UTF-8
 * decodes as usual, and each byte that is not part of valid UTF-8 (0x80-0xff) becomes the lone
 * low surrogate U+DC80-U+DCFF. Valid UTF-8 never encodes a surrogate, so the mapping is
 * one-to-one: `encodeName(decodeName(bytes))` gives the bytes back, and a name that is valid
 * UTF-8 is the ordinary string. Python tools reading these names from JSON get the same
 * string, which `os.fsencode` turns back into the same bytes.
 *
 * (Node has no such decoder: `toString('utf8')` turns every bad byte into U+FFFD and loses it.)
 */

/** A lone low surrogate U+DC80-U+DCFF (not the second half of a pair): one escaped byte. */
const ESCAPED_BYTE = /(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/;
const ESCAPED_BYTES = new RegExp(ESCAPED_BYTE.source, 'g');

/** The name of these bytes (see the top of this file). */
export function decodeName(raw: Buffer): string {
  const text = raw.toString('utf8');
  // Node replaces each bad byte with U+FFFD: without one, or when one is really there, the bytes were valid.
  if (!text.includes('\uFFFD') || Buffer.from(text, 'utf8').equals(raw)) return text;
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const lead = raw[i] as number;
    if (lead < 0x80) {
      out += String.fromCharCode(lead);
      i += 1;
      continue;
    }
    const length = lead >= 0xc2 && lead <= 0xdf ? 2 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xf0 && lead <= 0xf4 ? 4 : 0;
    if (length > 0 && i + length <= raw.length) {
      const sequence = raw.subarray(i, i + length);
      const char = sequence.toString('utf8');
      // One code point that encodes back to these bytes: valid (not overlong, no surrogate, at most U+10FFFF).
      if ([...char].length === 1 && Buffer.from(char, 'utf8').equals(sequence)) {
        out += char;
        i += length;
        continue;
      }
    }
    out += String.fromCharCode(0xdc00 + lead);
    i += 1;
  }
  return out;
}

/** Whether `name` holds an escaped byte (is not valid UTF-8 as bytes). */
export const hasEscapedBytes = (name: string): boolean => ESCAPED_BYTE.test(name);

/** The bytes of a name (see the top of this file). */
export function encodeName(name: string): Buffer {
  if (!hasEscapedBytes(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let from = 0;
  for (const m of name.matchAll(ESCAPED_BYTES)) {
    parts.push(Buffer.from(name.slice(from, m.index), 'utf8'), Buffer.of(name.charCodeAt(m.index) - 0xdc00));
    from = m.index + 1;
  }
  parts.push(Buffer.from(name.slice(from), 'utf8'));
  return Buffer.concat(parts);
}

/** Names as a list for a tool that reads them one after another, each followed by `end` (NUL, or a newline). */
export const nameList = (names: readonly string[], end: '\0' | '\n' = '\0'): Buffer => Buffer.concat(names.map((name) => encodeName(`${name}${end}`)));

/** A path for node:fs: the string itself, or its bytes when it holds an escaped byte (node:fs would write that as U+FFFD). */
export const fsPath = (path: string): string | Buffer => (hasEscapedBytes(path) ? encodeName(path) : path);
