#!/usr/bin/python3
"""Block-level copies of large files for Herd's filesystem pre-copy (compute/migration/block-delta.ts).

A database rewrites its large files in place (InnoDB's redo log, its tablespaces): after the
pre-copy, such a file has changed, but only in a few of its blocks. This tool sends those
blocks alone.

  herd-blocks.py send --fresh DIR   (source, the pre-copy) reads NUL-separated paths relative
                                    to DIR from stdin and writes a block stream to stdout:
                                    each regular file's metadata and its non-zero 64 KiB
                                    blocks. A path that is gone, or is no regular file
                                    reached without following a symlink, is skipped (a
                                    running container may change its files meanwhile).
  herd-blocks.py receive DIR        (target, through the transfer key's forced command
                                    bin/herd-ssh-command, which checked DIR) applies a block
                                    stream to the files under DIR and exits 0 only once it
                                    read the stream's end. It writes the state to stdout: the
                                    digest it used, then for each file sent fresh a record of
                                    a digest per block of what the target holds (hashed as the
                                    blocks arrive).
  herd-blocks.py send DIR STATE     (source, after the freeze) like --fresh, but sends only
                                    the blocks whose digest differs from STATE (the records
                                    the receiver wrote, for the same inode; read once stdin
                                    ended, so the sender may start before STATE exists); a
                                    file STATE does not know goes fresh.

  herd-blocks.py prune DIR          (target, the forced command's herd-prune) deletes the
                                    NUL-separated paths relative to DIR read from stdin (the
                                    deletions after a pre-copy) in one process, each reached
                                    through no symlink (one on the way is refused; a symlink
                                    named goes itself); a path already gone, or under a file,
                                    is skipped.

  herd-blocks.py untar DIR TAR...   (target, the forced command's herd-receive --xattrs) runs
                                    TAR (tar -x into DIR) on the tar stream from stdin and squares
                                    what tar leaves of a directory that a delta after a pre-copy
                                    extracts over or into: tar adds a member's xattrs to those a
                                    directory already has (the user.* and trusted.* ones the
                                    member lacks are removed before, and so are its POSIX ACLs:
                                    a removed user.* xattr or ACL, a directory made again under
                                    its old inode number without trusted.overlay.opaque), and keeps the set-group-ID bit a
                                    directory it makes inherits from its parent (cleared after,
                                    where the member lacks it). security.* and other system.*
                                    xattrs are left to the target's own policy.

Hashing on the target, as the blocks arrive (on the other host's core, pipelined with the
transfer), keeps the pre-copy as cheap as tar; the source hashes once, after the freeze, to
find the changed blocks.

Blocks are digested as bin/herd_digest.py says (XXH3-128 with a seed the pre-copy's sender
draws, 4 GB/s here against sha256's 0.36 GB/s, which the source pays after the freeze for every
large file that changed). A receiver without python3-xxhash digests by sha256 and its state
says so; so does a sender without it.

Stream (big-endian): magic b"HERDBLK2", algorithm:8s (b"xxh3-128" or b"sha256", NUL-padded)
seed:u64 (the digest the receiver's state should use), then records:
  F  flags:u8 pathlen:u16 path dev:u64 ino:u64 size:u64 mode:u32 uid:u32 gid:u32
     atime_ns:i64 mtime_ns:i64 nxattrs:u16 (namelen:u16 name vallen:u32 value)*
                                                  a file begins (dev, ino: the source's);
                                                  flags 1: "fresh", the target's content is void
  B  offset:u64 len:u32 data                      a block of that file
  D                                               the file is complete: metadata
  E                                               the end of the stream
A fresh file is truncated to 0 then to its size and gets its non-zero blocks (the rest are
holes); a known one is truncated to its new size and gets the blocks that differ.
State: b"HERDSTA2" algorithm:8s seed:u64 (the digest the receiver used), then per file
pathlen:u16 dev:u64 ino:u64 size:u64 nblocks:u32 path digest*nblocks.
(A b"HERDBLK1" stream, from a sender before the digest was named, has no header and is
digested by sha256, its state without a header either.)

Written in Python (Debian's python3, which Ansible needs on every host anyway) rather than in
the compute daemon: hashing runs in its own process, beside the daemon's SSH streams.
"""
import errno
import os
import shutil
import stat
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))  # -I leaves the tool's own directory out
from herd_digest import HEAD as DIGEST_HEAD, Digest  # noqa: E402

MAGIC = b"HERDBLK2"
MAGIC_V1 = b"HERDBLK1"
STATE_MAGIC = b"HERDSTA2"
BLOCK = 64 * 1024
MAX_BLOCK = 1024 * 1024
FRESH = 1
FILE_HEAD = struct.Struct(">BH")
FILE_META = struct.Struct(">QQQIIIqqH")
STATE_HEAD = struct.Struct(">HQQQI")
BLOCK_HEAD = struct.Struct(">QI")
ZERO = bytes(BLOCK)


def fail(message, code=1):
    sys.stderr.write(f"herd-blocks: {message}\n")
    sys.exit(code)


def load_state(path):
    """(the digest the receiver used, path -> (dev, ino, size, digests)) from a state; (None, {}) if it is empty (no reply)."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        return None, {}
    if data[:8] != STATE_MAGIC or len(data) < 8 + DIGEST_HEAD.size:
        fail(f"{path}: not a state file")
    algorithm, seed = DIGEST_HEAD.unpack_from(data, 8)
    digest = Digest.usable(algorithm, seed)
    if digest is None:
        return None, {}  # digested by what this host cannot compute: every file goes fresh
    state = {}
    pos = 8 + DIGEST_HEAD.size
    try:
        while pos < len(data):
            pathlen, dev, ino, size, nblocks = STATE_HEAD.unpack_from(data, pos)
            pos += STATE_HEAD.size
            rel = data[pos : pos + pathlen]
            digests = data[pos + pathlen : pos + pathlen + digest.size * nblocks]
            pos += pathlen + digest.size * nblocks
            if len(rel) != pathlen or len(digests) != digest.size * nblocks:
                raise struct.error("cut short")
            state[rel] = (dev, ino, size, digests)
    except struct.error:
        fail(f"{path}: not a state file")
    return digest, state


def fresh_digests(fd, size, received, digest):
    """The digests of a fresh copy: the blocks received, zeros for the rest (holes); read back if a block came unaligned."""
    if None in received.values():
        return digests_of(fd, size, digest)
    out = []
    zero = digest.of(ZERO)
    for index in range((size + BLOCK - 1) // BLOCK):
        block = received.get(index)
        if block is None:
            length = min(BLOCK, size - index * BLOCK)
            block = zero if length == BLOCK else digest.of(ZERO[:length])
        out.append(block)
    return b"".join(out)


def digests_of(fd, size, digest):
    """The digest of each block of the open file, up to size."""
    digests = []
    offset = 0
    while offset < size:
        data = os.pread(fd, min(BLOCK, size - offset), offset)
        if not data:
            break
        digests.append(digest.of(data))
        offset += len(data)
    return b"".join(digests)


def open_beneath(dir_fd, rel):
    """rel under dir_fd, following no symlink on the way (a container may plant one to reach the host's files); None if it is no regular file."""
    parts = rel.split(b"/")
    opened = []
    try:
        fd = dir_fd
        for part in parts[:-1]:
            fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            opened.append(fd)
        # Opened only once it is known to be a regular file (O_PATH pins the inode): whatever a container put
        # in the file's place is never opened (a FIFO would block; an overlay whiteout, device 0/0, fails with
        # ENXIO; a device may act on open).
        path_fd = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW, dir_fd=fd)
        opened.append(path_fd)
        if not stat.S_ISREG(os.fstat(path_fd).st_mode):
            return None
        return os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY)
    finally:
        for fd in opened:
            os.close(fd)


def send(root, state_path):
    """Sends the files on stdin; without a state_path, every one fresh and nothing hashed. The state is read
    once the paths are in (the sender may start before the state is written: compute/migration/block-delta.ts)."""
    paths = [p for p in sys.stdin.buffer.read().split(b"\0") if p]
    digest, state = (None, {}) if state_path is None else load_state(state_path)
    # The receiver digests what goes fresh as the state did (or, for a first copy, as this host chooses).
    digest = digest or Digest.local()
    out = open(sys.stdout.fileno(), "wb", buffering=1024 * 1024, closefd=False)
    out.write(MAGIC + digest.head())
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for rel in paths:
        try:
            fd = open_beneath(dir_fd, rel)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                continue  # gone or replaced meanwhile (a running container's): its change goes after the freeze, by tar
            raise
        if fd is None:
            continue  # likewise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue  # likewise
            known = state.get(rel)
            fresh = known is None or known[0] != st.st_dev or known[1] != st.st_ino
            # What the target holds: a file of target_size bytes whose first blocks hashed to old.
            target_size, old = (0, b"") if fresh else known[2:]
            old_blocks = len(old) // digest.size
            xattrs = [(os.fsencode(name), os.getxattr(fd, name)) for name in os.listxattr(fd)]
            out.write(b"F" + FILE_HEAD.pack(FRESH if fresh else 0, len(rel)) + rel)
            out.write(FILE_META.pack(st.st_dev, st.st_ino, st.st_size, st.st_mode, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns, len(xattrs)))
            for name, value in xattrs:
                out.write(struct.pack(">H", len(name)) + name + struct.pack(">I", len(value)) + value)
            offset = 0
            index = 0
            # Up to the size announced, and no further after a short read (a running container's file may
            # grow or shrink meanwhile: its ctime then sends it again, and the target's state says what it got).
            while offset < st.st_size:
                want = min(BLOCK, st.st_size - offset)
                data = os.pread(fd, want, offset)
                if index < old_blocks:
                    changed = old[index * digest.size : (index + 1) * digest.size] != digest.of(data)
                elif offset >= target_size:
                    changed = data != ZERO[: len(data)]  # the truncate to the new size left zeros there
                else:
                    changed = True  # unknown content on the target
                if changed and data:
                    out.write(b"B" + BLOCK_HEAD.pack(offset, len(data)))
                    out.write(data)
                if len(data) < want:
                    break
                offset += len(data)
                index += 1
            out.write(b"D")
        finally:
            os.close(fd)
    out.write(b"E")
    out.flush()


class Input:
    def __init__(self, stream):
        self.stream = stream

    def exactly(self, n):
        data = self.stream.read(n)
        if len(data) != n:
            fail("the block stream ended early")
        return data


def open_parent(root_fd, rel):
    """The directory rel (bytes) is in, opened under root_fd through no symlink (missing ones made, mode 0700, as are ones a file was in the way of), and rel's name."""
    if not rel or rel.startswith(b"/") or b"\0" in rel:
        fail(f"refused: not a relative path: {rel!r}", 126)
    parts = rel.split(b"/")
    if any(p in (b"", b".", b"..") for p in parts):
        fail(f"refused: a path has . or .. or empty segments: {rel!r}", 126)
    fd = os.dup(root_fd)
    for part in parts[:-1]:
        try:
            os.mkdir(part, 0o700, dir_fd=fd)
        except FileExistsError:
            # No symlink, no directory (the pre-copy's tar, a moment earlier, may have seen a file where a running
            # container has a directory now): what the stream says is there replaces it, as a missing one is made.
            if not stat.S_ISDIR((st := os.stat(part, dir_fd=fd, follow_symlinks=False)).st_mode) and not stat.S_ISLNK(st.st_mode):
                os.unlink(part, dir_fd=fd)
                os.mkdir(part, 0o700, dir_fd=fd)
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                fail(f"refused: {rel!r} leads out of the directory (through a symlink)", 126)
            raise
        finally:
            os.close(fd)
        fd = child
    return fd, parts[-1]


def receive(root):
    try:
        root_fd = os.open(os.fsencode(root), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        fail(f"refused: {root} is not a directory", 126)
    src = Input(sys.stdin.buffer)
    out = open(sys.stdout.fileno(), "wb", buffering=64 * 1024, closefd=False)
    magic = src.exactly(len(MAGIC))
    if magic == MAGIC:
        algorithm, seed = DIGEST_HEAD.unpack(src.exactly(DIGEST_HEAD.size))
        digest = Digest.usable(algorithm, seed) or Digest(b"sha256", 0)
        out.write(STATE_MAGIC + digest.head())
    elif magic == MAGIC_V1:
        digest = Digest(b"sha256", 0)
    else:
        fail("not a block stream")
    fd = None
    meta = None
    while True:
        kind = src.exactly(1)
        if kind == b"F":
            if fd is not None:
                fail("a file began before the previous one was complete")
            flags, pathlen = FILE_HEAD.unpack(src.exactly(FILE_HEAD.size))
            rel = src.exactly(pathlen)
            dev, ino, size, mode, uid, gid, atime_ns, mtime_ns, nxattrs = FILE_META.unpack(src.exactly(FILE_META.size))
            xattrs = []
            for _ in range(nxattrs):
                (namelen,) = struct.unpack(">H", src.exactly(2))
                name = src.exactly(namelen)
                (vallen,) = struct.unpack(">I", src.exactly(4))
                xattrs.append((name, src.exactly(vallen)))
            parent_fd, name = open_parent(root_fd, rel)
            try:
                try:
                    fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW, dir_fd=parent_fd)
                except FileNotFoundError:
                    # Creating it changes the parent's times, which are the source's: keep them.
                    before = os.fstat(parent_fd)
                    fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=parent_fd)
                    os.utime(parent_fd, ns=(before.st_atime_ns, before.st_mtime_ns))
            finally:
                os.close(parent_fd)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                fail(f"refused: {rel!r} is not a regular file here")
            if flags & FRESH:
                os.ftruncate(fd, 0)
            os.ftruncate(fd, size)
            meta = (rel, dev, ino, flags & FRESH, size, mode, uid, gid, atime_ns, mtime_ns, xattrs)
            digests = {}  # block index -> digest of a fresh file's blocks, as they arrive
        elif kind == b"B":
            offset, length = BLOCK_HEAD.unpack(src.exactly(BLOCK_HEAD.size))
            if fd is None or length > MAX_BLOCK or offset + length > meta[4]:
                fail("a block outside its file")
            data = src.exactly(length)
            if meta[3]:
                # A whole aligned block (or the file's last): its digest now, on this host's time, pipelined with the transfer.
                whole = offset % BLOCK == 0 and (length == BLOCK or offset + length == meta[4])
                digests[offset // BLOCK] = digest.of(data) if whole else None
            while data:
                n = os.pwrite(fd, data, offset)
                data = data[n:]
                offset += n
        elif kind == b"D":
            if fd is None:
                fail("a file completed that never began")
            rel, dev, ino, fresh, size, mode, uid, gid, atime_ns, mtime_ns, xattrs = meta
            os.fchown(fd, uid, gid)
            os.fchmod(fd, stat.S_IMODE(mode))
            wanted = {os.fsdecode(name): value for name, value in xattrs}
            for name in os.listxattr(fd):
                if name not in wanted:
                    os.removexattr(fd, name)
            for name, value in wanted.items():
                os.setxattr(fd, name, value)
            os.utime(fd, ns=(atime_ns, mtime_ns))
            if fresh:
                out.write(STATE_HEAD.pack(len(rel), dev, ino, size, (size + BLOCK - 1) // BLOCK) + rel + fresh_digests(fd, size, digests, digest))
            os.close(fd)
            fd = None
        elif kind == b"E":
            if fd is not None:
                fail("the stream ended inside a file")
            out.flush()
            return
        else:
            fail(f"unknown record {kind!r}")


class TarHeaders:
    """Follows a tar stream's headers as its bytes pass (POSIX/pax as tar -c --xattrs writes it) and
    calls on_dir(name, mode, xattr_names) for each directory member; on anything it does not understand it
    stops following (the bytes still pass: tar -x judges the stream)."""

    def __init__(self, on_dir):
        self.on_dir = on_dir
        self.buf = bytearray()
        self.need = 512  # bytes of the header (or pax records) being read
        self.skip = 0  # data bytes to pass before the next header
        self.pax = None  # size of the pax records being read, if any
        self.next = {}  # the pax keywords for the next member
        self.stopped = False

    def feed(self, data):
        pos = 0
        while pos < len(data) and not self.stopped:
            if self.skip:
                n = min(self.skip, len(data) - pos)
                self.skip -= n
                pos += n
                continue
            n = min(self.need - len(self.buf), len(data) - pos)
            self.buf += data[pos : pos + n]
            pos += n
            if len(self.buf) == self.need:
                block, self.buf = bytes(self.buf), bytearray()
                self.records(block) if self.pax is not None else self.header(block)

    def header(self, block):
        try:
            if block == bytes(512) or sum(block[:148]) + 8 * 32 + sum(block[156:]) != int(block[148:156].strip(b" \0"), 8):
                raise ValueError("the end, or not a header")
            size = int(self.next[b"size"]) if b"size" in self.next else int(block[124:136].strip(b" \0") or b"0", 8)
        except ValueError:  # also a base-256 size (pax gives a large file's size as "size")
            self.stopped = True
            return
        kind = block[156:157]
        padded = (size + 511) // 512 * 512
        if kind in (b"x", b"L"):
            self.pax, self.need = (size, padded) if kind == b"x" else (-size, padded)
            return
        prefix = block[345:500].rstrip(b"\0") + b"/" if block[257:263] == b"ustar\0" and block[345] else b""  # (not in GNU headers)
        name = self.next.get(b"path") or prefix + block[:100].rstrip(b"\0")
        if kind == b"5":
            mode = int(block[100:108].strip(b" \0") or b"0", 8)
            self.on_dir(name, mode, {k[len(b"SCHILY.xattr.") :].replace(b"%3D", b"=").replace(b"%25", b"%") for k in self.next if k.startswith(b"SCHILY.xattr.")})
        if kind != b"g":
            self.next = {}
        self.skip = padded

    def records(self, block):
        size, self.pax, self.need = self.pax, None, 512
        if size < 0:  # a GNU long name: the next member's
            self.next[b"path"] = block[:-size].rstrip(b"\0")
            return
        data = block[:size]
        while data:
            length, _, rest = data.partition(b" ")
            if not length.isdigit() or int(length) > len(data):
                self.stopped = True
                return
            key, _, value = rest[: int(length) - len(length) - 2].partition(b"=")
            self.next[key] = value
            data = data[int(length) :]


def prune(root):
    """Deletes the NUL-separated relative paths on stdin under root, none through a symlink (one process: a path costs no fork)."""
    try:
        root_fd = os.open(os.fsencode(root), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        fail(f"refused: {root} is not a directory", 126)
    for rel in sys.stdin.buffer.read().split(b"\0"):
        if not rel:
            continue
        if rel.startswith(b"/"):
            fail(f"refused: a path to delete must be relative: {rel!r}", 126)
        parts = rel.split(b"/")
        if any(p in (b"", b".", b"..") for p in parts):
            fail(f"refused: a path to delete has . or .. or empty segments: {rel!r}", 126)
        fd = os.dup(root_fd)
        try:
            for part in parts[:-1]:
                try:
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as err:
                    if err.errno in (errno.ELOOP, errno.ENOTDIR) and stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                        fail(f"refused: {rel!r} leads out of the directory (through a symlink)", 126)
                    raise
                os.close(fd)
                fd = child
            name = parts[-1]
            # A symlink goes itself, not what it points to; a directory with all it holds (rmtree by fds follows no symlink).
            if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        except OSError as err:
            # Gone already, or under a file: nothing of the tree to delete there.
            if err.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise
        finally:
            os.close(fd)

# A directory's ACLs: removed like user.* when the member lacks them (setfacl -b / -k since the pre-copy).
POSIX_ACLS = ("system.posix_acl_access", "system.posix_acl_default")


def untar(root, command):
    """Runs command (tar -x into root) on the tar stream from stdin, squaring what it leaves of directories
    (see the top of this file); exits as it does."""
    try:
        root_fd = os.open(os.fsencode(root), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        fail(f"refused: {root} is not a directory", 126)

    def beneath(name):
        """The deepest existing directory on the way to name under root (through no symlink, making nothing), and whether it is name's."""
        parts = [p for p in name.split(b"/") if p not in (b"", b".")]
        fd = os.dup(root_fd)
        for part in parts:
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    return fd, False
                os.close(fd)
                raise
            os.close(fd)
            fd = child
        return fd, True

    setgid = []  # directories that may inherit a set-group-ID bit their member lacks

    def on_dir(name, mode, wanted):
        if b".." in name.split(b"/"):
            return  # tar refuses it
        fd, there = beneath(name)
        try:
            if there:
                for attr in os.listxattr(fd):
                    if (attr.startswith(("user.", "trusted.")) or attr in POSIX_ACLS) and os.fsencode(attr) not in wanted:
                        os.removexattr(fd, attr)
            if not mode & stat.S_ISGID and os.fstat(fd).st_mode & stat.S_ISGID:
                setgid.append(name)
        except OSError as err:
            if err.errno not in (errno.ENOTSUP, errno.ENODATA):
                raise
        finally:
            os.close(fd)

    headers = TarHeaders(on_dir)
    tar = subprocess.Popen(command, stdin=subprocess.PIPE)
    try:
        while data := os.read(0, 1024 * 1024):
            headers.feed(data)
            tar.stdin.write(data)
        tar.stdin.close()
    except BrokenPipeError:
        pass  # tar stopped early: its exit says why
    code = tar.wait()
    if code == 0:
        for name in setgid:
            fd, there = beneath(name)
            try:
                if there and (mode := os.fstat(fd).st_mode) & stat.S_ISGID:
                    os.fchmod(fd, stat.S_IMODE(mode) & ~stat.S_ISGID)
            finally:
                os.close(fd)
    sys.exit(code)


def main(argv):
    if len(argv) == 4 and argv[1] == "send" and argv[2] == "--fresh":
        send(os.fsencode(argv[3]), None)
    elif len(argv) == 4 and argv[1] == "send":
        send(os.fsencode(argv[2]), argv[3])
    elif len(argv) == 3 and argv[1] == "receive":
        receive(argv[2])
    elif len(argv) == 3 and argv[1] == "prune":
        prune(argv[2])
    elif len(argv) > 3 and argv[1] == "untar":
        untar(argv[2], argv[3:])
    else:
        fail("usage: herd-blocks.py send --fresh DIR < paths  |  herd-blocks.py send DIR STATE < paths  |  herd-blocks.py receive DIR < stream > state  |  herd-blocks.py prune DIR < paths  |  herd-blocks.py untar DIR TAR-COMMAND... < tar", 2)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except OSError as err:
        fail(str(err))
