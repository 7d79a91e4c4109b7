#!/usr/bin/python3
"""herd-disk: a lab host's disk with a limited number of operations per second.

Usage: herd-disk.py BACKING_FILE MOUNT_DIR --iops N

Serves one file, MOUNT_DIR/disk.img, whose contents are BACKING_FILE, through FUSE, and
lets at most N reads, writes and flushes through per second, first come first served:
when more are asked for, they queue, as on a real disk. `herd lab up --disk-iops N` puts
each host's ext4 (on a loop device) on such a file (control/lab/host-disk.ts), so that a
disk-heavy container slows the other containers of its own host and not those of other
hosts. Without it the lab's hosts share this machine's one disk and its page cache, and a
noisy neighbour slows every host alike.

Written in Python because Node has no FUSE binding without a native build; llfuse is
Debian's python3-llfuse. The process runs in the foreground until unmounted or signalled.
"""
import argparse
import errno
import os
import stat
import sys
import threading
import time

import llfuse

FILE_NAME = b"disk.img"
FILE_INODE = llfuse.ROOT_INODE + 1


class Throttle:
    """First come, first served: each operation is given the next free slot, 1/iops apart."""

    def __init__(self, iops):
        self.interval = 1.0 / iops
        self.next_slot = time.monotonic()
        self.lock = threading.Lock()

    def wait(self):
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class Disk(llfuse.Operations):
    def __init__(self, backing, iops):
        super().__init__()
        self.fd = os.open(backing, os.O_RDWR)
        self.throttle = Throttle(iops)

    def _file_attr(self):
        st = os.fstat(self.fd)
        attr = llfuse.EntryAttributes()
        attr.st_ino = FILE_INODE
        attr.st_mode = stat.S_IFREG | 0o600
        attr.st_nlink = 1
        attr.st_size = st.st_size
        attr.st_blocks = st.st_blocks
        attr.st_blksize = 4096
        for t in ("st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
            setattr(attr, t, st.st_mtime_ns)
        attr.attr_timeout = 3600
        attr.entry_timeout = 3600
        return attr

    def getattr(self, inode, ctx=None):
        if inode == FILE_INODE:
            return self._file_attr()
        if inode == llfuse.ROOT_INODE:
            attr = llfuse.EntryAttributes()
            attr.st_ino = llfuse.ROOT_INODE
            attr.st_mode = stat.S_IFDIR | 0o755
            attr.st_nlink = 2
            return attr
        raise llfuse.FUSEError(errno.ENOENT)

    def lookup(self, parent, name, ctx=None):
        if parent == llfuse.ROOT_INODE and name == FILE_NAME:
            return self._file_attr()
        raise llfuse.FUSEError(errno.ENOENT)

    def opendir(self, inode, ctx):
        if inode != llfuse.ROOT_INODE:
            raise llfuse.FUSEError(errno.ENOTDIR)
        return inode

    def readdir(self, fh, off):
        if off < 1:
            yield (FILE_NAME, self._file_attr(), 1)

    def open(self, inode, flags, ctx):
        if inode != FILE_INODE:
            raise llfuse.FUSEError(errno.EISDIR)
        return inode

    def read(self, fh, off, size):
        self.throttle.wait()
        return os.pread(self.fd, size, off)

    def write(self, fh, off, buf):
        self.throttle.wait()
        return os.pwrite(self.fd, buf, off)

    def fsync(self, fh, datasync):
        # A flush is one operation of the disk; the data stays in this machine's page cache
        # (the lab's disks hold nothing that must survive a power cut).
        self.throttle.wait()

    def flush(self, fh):
        pass

    def release(self, fh):
        pass

    def statfs(self, ctx):
        s = llfuse.StatvfsData()
        s.f_bsize = 4096
        s.f_frsize = 4096
        return s


def main():
    p = argparse.ArgumentParser(description="A FUSE file with a limited number of operations per second (a lab host's disk).")
    p.add_argument("backing")
    p.add_argument("mountpoint")
    p.add_argument("--iops", type=int, required=True)
    a = p.parse_args()
    if a.iops < 1:
        sys.exit("herd-disk: --iops must be at least 1")
    if not os.path.isfile(a.backing):
        sys.exit("herd-disk: %s: no such file" % a.backing)
    ops = Disk(a.backing, a.iops)
    llfuse.init(ops, a.mountpoint, ["fsname=herd-disk", "subtype=herd-disk", "max_write=131072", "big_writes"])
    try:
        llfuse.main(workers=16)
    finally:
        llfuse.close()


if __name__ == "__main__":
    main()
