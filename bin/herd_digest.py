"""The digest bin/herd-pages.py and bin/herd-blocks.py match memory pages and file blocks by.

XXH3-128 with a 64-bit seed drawn for each copy (python3-xxhash): a few GB/s, against sha256's
0.36 GB/s on a CPU without SHA extensions, in the downtime. It need not resist a crafted
collision (docs/security.md): a page is matched only against the same container's pages, a
block only against the same file's older content, and the seed never reaches a container.
Without python3-xxhash a host digests by sha256, correct but slower; what a digest was made
with is written beside it (`head`), so that both sides of a copy use the same one.
"""
import functools
import hashlib
import os
import struct
import sys

# The tools run with -I -S (compute/migration/python-tool.ts, bin/herd-ssh-command): Debian's
# python3-xxhash is looked for in its own place alone.
sys.path.append("/usr/lib/python3/dist-packages")
try:
    import xxhash
except ImportError:  # python3-xxhash is missing: sha256
    xxhash = None
finally:
    sys.path.pop()

HEAD = struct.Struct(">8sQ")  # algorithm (NUL-padded), seed


class Digest:
    """A digest: its name, seed, size in bytes and function (`of`)."""

    def __init__(self, algorithm, seed):
        self.algorithm = algorithm
        self.seed = seed
        if algorithm == b"xxh3-128":
            self.of = functools.partial(xxhash.xxh3_128_digest, seed=seed)
            self.size = 16
        else:
            self.of = lambda data: hashlib.sha256(data).digest()
            self.size = 32

    @staticmethod
    def usable(algorithm, seed):
        """The digest named (as `head` wrote it), or None if this host cannot compute it."""
        algorithm = algorithm.rstrip(b"\0")
        if algorithm == b"sha256" or (algorithm == b"xxh3-128" and xxhash is not None):
            return Digest(algorithm, seed)
        return None

    @staticmethod
    def local():
        """This host's choice for a new copy, with a seed of its own."""
        return Digest(b"xxh3-128", int.from_bytes(os.urandom(8), "big")) if xxhash is not None else Digest(b"sha256", 0)

    def head(self):
        return HEAD.pack(self.algorithm, self.seed)
