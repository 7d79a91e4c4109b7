#!/usr/bin/python3
"""Checkpoint images by pages, with the memory copied before the freeze (compute/migration/memory-precopy.ts).

Most of a container's memory does not change in the second before its freeze: MariaDB under
sysbench oltp_read_write changed 13 MiB of its 120 MiB of dumped pages in 3 s, and 58 MiB of
them were zeros. So, while the container still runs, the source reads the resident pages of its
processes and sends each distinct one once (the prior); after the dump, each 4 KiB page of the
images goes as a hole (zeros), as its place in the prior (a page the target already holds), or
as its bytes. The kernel's soft-dirty tracking, which CRIU's own pre-dump needs, is not used (it
is absent on many kernels); the pages are matched by a digest.

The digest is bin/herd_digest.py's, with a seed drawn per prior (XXH3-128: about 100 ms of CPU
per 256 MiB with this tool's per-page overhead, against 0.9 s for sha256 on a CPU without SHA
extensions, in the downtime as in the pre-copy). The index names it; it is made and read on the
source host alone.

  herd-pages.py prior INDEX PID...  (source, while the container runs) writes a prior stream
                                    to stdout: each distinct non-zero page of the processes'
                                    private memory that is resident now (/proc/PID/pagemap,
                                    /proc/PID/mem); INDEX gets the pages' digests in the same
                                    order, after its header (the digest's name and seed). A
                                    process that is gone, or a region that cannot be read, is
                                    skipped (the images carry what the prior lacks).
  herd-pages.py send                (source, started before the pre-copy) reads an INDEX from
                                    stdin's first line ("-": no prior; zeros still go as holes),
                                    then a directory from the second (once the dump wrote it),
                                    and writes the directory's files as an image stream, matching
                                    pages against INDEX.
  herd-pages.py digest              prints the digest a prior made here uses (herd doctor).
  herd-pages.py receive DIR         (target, the forced command's herd-pages, which checked DIR)
                                    reads a prior stream into DIR/.herd-prior, or an image stream
                                    into files under DIR, taking the pages it names from the
                                    prior, which it then removes. Exits 0 only once it read the
                                    stream's end.

A zero page of a process's private anonymous memory is left out of the images the receiver
writes (the stream still describes them whole): its pages-N.img lacks it and its pagemap-PID.img
no longer lists it. CRIU's restore maps that memory afresh, where a page it does not fill reads
as zeros, so the process sees the same bytes while the restore copies and allocates less (MariaDB
under load: about half of its dumped pages are zeros). Pages of any other mapping (a file mapped
privately, shared memory) stay, whatever they hold: a page left out there would show the file.
The receiver learns which memory is which from mm-PID.img and pagemap-PID.img, which the sender's
name order brings before pages-N.img; a directory it cannot read so is written as sent.

Streams (big-endian):
  prior:  b"HERDPRI1", then  P count:u32 (count pages of 4096 bytes)  ...  E total:u64
  images: b"HERDPGS1", then per file  F namelen:u16 name mode:u32 size:u64, its content as
          D len:u32 data (bytes)  Z len:u64 (zeros: a hole)  R index:u32 count:u32 (count
          pages of the prior from its page index), then C (the file is complete); E at the end.
index:   b"HERDIDX1" algorithm:8s (b"xxh3-128" or b"sha256", NUL-padded) seed:u64, then a digest
          per page of the prior, in its order.
The files of a CRIU image directory are regular files in one directory: anything else is an
error, and a name must be a plain file name.

Written in Python like bin/herd-blocks.py (Debian's python3, on every host for Ansible):
hashing runs in its own process, beside the daemon's SSH streams.
"""
import bisect
import mmap
import os
import re
import stat
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))  # -I leaves the tool's own directory out
from herd_digest import HEAD as DIGEST_HEAD, Digest  # noqa: E402

PRIOR_MAGIC = b"HERDPRI1"
INDEX_MAGIC = b"HERDIDX1"
IMAGES_MAGIC = b"HERDPGS1"
PRIOR_FILE = ".herd-prior"
PAGE = 4096
ZERO = bytes(PAGE)
CHUNK = 4 * 1024 * 1024
MAX_DATA = 1024 * 1024
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
FILE_META = struct.Struct(">IQ")
REF = struct.Struct(">II")
# CRIU's images (criu/include/magic.h, image.h, pagemap.h; images/mm.proto, vma.proto, pagemap.proto).
U32LE = struct.Struct("<I")
IMG_COMMON_MAGIC = 0x54564319
MM_MAGIC = 0x57492820
PAGEMAP_MAGIC = 0x56084025
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2
VMA_ANON_PRIVATE = 1 << 9
# Anonymous private memory CRIU treats apart (AIO rings, SysV shm, vDSO, shadow stacks...): left whole.
VMA_SPECIAL = (1 << 2) | (1 << 3) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 17) | (1 << 27) | (1 << 31)
MAP_PRIVATE = 0x02
MAP_ANONYMOUS = 0x20
MAP_HUGETLB = 0x40000
# Beyond these, the receiver writes the images as sent rather than hold their plan in memory: a
# pagemap describing 256 GiB of dumped memory (64 MiB of flags per page), an mm or pagemap image of 64 MiB.
MAX_PLAN_PAGES = 1 << 26
MAX_PARSED_IMAGE = 64 << 20
# /proc/PID/pagemap: bit 63 present, bit 61 a file page or shared anonymous memory.
PRESENT = 1 << 63
FILE_OR_SHARED = 1 << 61
PAGEMAP_BATCH = 1 << 16


def fail(message, code=1):
    sys.stderr.write(f"herd-pages: {message}\n")
    sys.exit(code)


def stdout_writer():
    return open(sys.stdout.fileno(), "wb", buffering=MAX_DATA, closefd=False)


def regions(pid):
    """The readable regions of a process whose pages CRIU dumps: (start, end, shared memory?); none once it is gone."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        fields = line.split(None, 5)
        perms = fields[1]
        path = fields[5] if len(fields) > 5 else b""
        if not perms.startswith(b"r") or path in (b"[vsyscall]", b"[vvar]", b"[vvar_vclock]", b"[vdso]"):
            continue
        # A shared mapping's pages are CRIU's only for shared anonymous memory (no file, /dev/zero, SysV, memfd).
        shmem = perms[3:4] == b"s" and (path == b"" or path.startswith((b"/dev/zero", b"/SYSV", b"/memfd:")))
        if perms[3:4] == b"s" and not shmem:
            continue
        start, end = (int(x, 16) for x in fields[0].split(b"-"))
        yield start, end, shmem


def resident_runs(pagemap_fd, start, end, shmem):
    """Runs (address, pages) of resident pages in [start, end): private ones, or any in shared anonymous memory."""
    first = start // PAGE
    total = (end - start) // PAGE
    run_start = None
    run_len = 0
    for batch in range(0, total, PAGEMAP_BATCH):
        count = min(PAGEMAP_BATCH, total - batch)
        try:
            raw = os.pread(pagemap_fd, count * 8, (first + batch) * 8)
        except OSError:
            raw = b""  # the process ended meanwhile
        entries = struct.unpack(f"={len(raw) // 8}Q", raw)
        for i, entry in enumerate(entries):
            if entry & PRESENT and (shmem or not entry & FILE_OR_SHARED):
                if run_start is None:
                    run_start = (first + batch + i) * PAGE
                    run_len = 0
                run_len += 1
            elif run_start is not None:
                yield run_start, run_len
                run_start = None
        if len(entries) < count:
            break
    if run_start is not None:
        yield run_start, run_len


def prior(index_path, pids):
    out = stdout_writer()
    out.write(PRIOR_MAGIC)
    digest = Digest.local()
    seen = set()
    digests = []
    for pid in pids:
        try:
            pagemap_fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
            mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        except OSError:
            continue  # gone meanwhile: its pages go with the images
        try:
            for start, end, shmem in list(regions(pid)):
                for address, pages in resident_runs(pagemap_fd, start, end, shmem):
                    for offset in range(0, pages * PAGE, CHUNK):
                        try:
                            data = os.pread(mem_fd, min(CHUNK, pages * PAGE - offset), address + offset)
                        except OSError:
                            break  # unmapped or unreadable meanwhile
                        fresh = []
                        for k in range(0, len(data) - PAGE + 1, PAGE):
                            page = data[k : k + PAGE]
                            if page == ZERO:
                                continue
                            key = digest.of(page)
                            if key in seen:
                                continue
                            seen.add(key)
                            digests.append(key)
                            fresh.append(page)
                        if fresh:
                            out.write(b"P" + U32.pack(len(fresh)))
                            out.write(b"".join(fresh))
        finally:
            os.close(pagemap_fd)
            os.close(mem_fd)
    # The index first: the receiver exits (and the sender's caller goes on) once it read the end.
    with open(index_path, "wb") as f:
        f.write(INDEX_MAGIC + digest.head())
        f.write(b"".join(digests))
    out.write(b"E" + U64.pack(len(digests)))
    out.flush()


def load_index(index_path):
    """(digest -> the page's place in the prior (the first, should two pages hash alike), the digest function); ({}, None) without a prior."""
    if index_path == "-":
        return {}, None
    with open(index_path, "rb") as f:
        data = f.read()
    if len(data) < 8 + DIGEST_HEAD.size or data[:8] != INDEX_MAGIC:
        fail(f"{index_path}: not an index of a prior")
    algorithm, seed = DIGEST_HEAD.unpack_from(data, 8)
    digest = Digest.usable(algorithm, seed)
    if digest is None:
        name = algorithm.rstrip(b"\0").decode(errors="replace")
        fail(f"pages digested by {name!r} cannot be matched on this host")
    size = digest.size
    digests = memoryview(data)[8 + DIGEST_HEAD.size :]
    if len(digests) % size:
        fail(f"{index_path}: not a whole number of {size}-byte digests")
    index = {}
    for i in range(len(digests) // size):
        index.setdefault(bytes(digests[i * size : i * size + size]), i)
    return index, digest.of


class Encoder:
    """Coalesces a file's pages into D, Z and R records."""

    def __init__(self, out):
        self.out = out
        self.kind = None
        self.literal = []
        self.literal_len = 0
        self.zeros = 0
        self.ref_start = 0
        self.ref_count = 0

    def flush(self):
        if self.kind == "D" and self.literal_len:
            self.out.write(b"D" + U32.pack(self.literal_len))
            self.out.write(b"".join(self.literal))
            self.literal = []
            self.literal_len = 0
        elif self.kind == "Z" and self.zeros:
            self.out.write(b"Z" + U64.pack(self.zeros))
            self.zeros = 0
        elif self.kind == "R" and self.ref_count:
            self.out.write(b"R" + REF.pack(self.ref_start, self.ref_count))
            self.ref_count = 0
        self.kind = None

    def data(self, chunk):
        if self.kind != "D" or self.literal_len + len(chunk) > MAX_DATA:
            self.flush()
            self.kind = "D"
        self.literal.append(chunk)
        self.literal_len += len(chunk)

    def zero(self, length):
        if self.kind != "Z":
            self.flush()
            self.kind = "Z"
        self.zeros += length

    def ref(self, place):
        if self.kind == "R" and place == self.ref_start + self.ref_count and self.ref_count < 0xFFFFFFFF:
            self.ref_count += 1
            return
        self.flush()
        self.kind = "R"
        self.ref_start = place
        self.ref_count = 1


def stdin_line(what):
    line = sys.stdin.buffer.readline()
    if not line.endswith(b"\n"):
        fail(f"no {what} on stdin")
    return line[:-1]


def send():
    index, digest_of = load_index(os.fsdecode(stdin_line("index")))
    root = stdin_line("directory")
    out = stdout_writer()
    out.write(IMAGES_MAGIC)
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for entry in sorted(os.fsencode(e) for e in os.listdir(dir_fd)):
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                fail(f"{os.fsdecode(root)}/{os.fsdecode(entry)}: not a regular file (an image directory holds only files)")
            out.write(b"F" + U16.pack(len(entry)) + entry + FILE_META.pack(stat.S_IMODE(st.st_mode), st.st_size))
            encoder = Encoder(out)
            offset = 0
            while offset < st.st_size:
                data = os.pread(fd, min(CHUNK, st.st_size - offset), offset)
                if not data:
                    fail(f"{os.fsdecode(entry)}: shorter than its size")
                whole = len(data) - len(data) % PAGE
                for k in range(0, whole, PAGE):
                    page = data[k : k + PAGE]
                    if page == ZERO:
                        encoder.zero(PAGE)
                        continue
                    place = index.get(digest_of(page)) if index else None
                    if place is None:
                        encoder.data(page)
                    else:
                        encoder.ref(place)
                if whole < len(data):
                    encoder.data(data[whole:])
                offset += len(data)
            encoder.flush()
            out.write(b"C")
        finally:
            os.close(fd)
    out.write(b"E")
    out.flush()


class Input:
    def __init__(self):
        self.f = open(sys.stdin.fileno(), "rb", buffering=MAX_DATA, closefd=False)

    def exactly(self, n):
        data = self.f.read(n)
        if len(data) != n:
            fail("the stream ended early (the sender failed or the connection was lost)")
        return data

    def at_end(self):
        return self.f.read(1) == b""


def receive_prior(dir_fd, inp):
    fd = os.open(PRIOR_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    pages = 0
    try:
        while True:
            tag = inp.exactly(1)
            if tag == b"P":
                (count,) = U32.unpack(inp.exactly(4))
                data = inp.exactly(count * PAGE)
                os.pwrite(fd, data, pages * PAGE)
                pages += count
            elif tag == b"E":
                (total,) = U64.unpack(inp.exactly(8))
                if total != pages:
                    fail(f"the prior announced {total} pages but held {pages}")
                break
            else:
                fail(f"bad record {tag!r} in a prior stream")
    finally:
        os.close(fd)
    if not inp.at_end():
        fail("data after the prior stream's end")


def varint(buf, i):
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def encode_varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_numbers(numbers):
    """A protobuf message of numeric fields ({number: value}, each a varint)."""
    return b"".join(encode_varint(n << 3) + encode_varint(v) for n, v in numbers.items())


def fields(message):
    """A protobuf message's fields, in order: (number, wire type, value: an int, or bytes when length-delimited)."""
    i, end = 0, len(message)
    while i < end:
        key, i = varint(message, i)
        wire = key & 7
        if wire == 0:
            value, i = varint(message, i)
        elif wire == 1:
            value, i = int.from_bytes(message[i : i + 8], "little"), i + 8
        elif wire == 2:
            length, i = varint(message, i)
            value, i = bytes(message[i : i + length]), i + length
        elif wire == 5:
            value, i = int.from_bytes(message[i : i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wire}")
        if i > end:
            raise ValueError("truncated message")
        yield key >> 3, wire, value


def image_entries(data, magic):
    """The entries of a CRIU image: its two magics, then per entry its size (u32) and a protobuf message."""
    if len(data) < 8 or U32LE.unpack_from(data, 0)[0] != IMG_COMMON_MAGIC or U32LE.unpack_from(data, 4)[0] != magic:
        raise ValueError("not the image expected")
    entries, i = [], 8
    while i < len(data):
        if i + 4 > len(data):
            raise ValueError("truncated image")
        (size,) = U32LE.unpack_from(data, i)
        if i + 4 + size > len(data):
            raise ValueError("truncated image")
        entries.append(data[i + 4 : i + 4 + size])
        i += 4 + size
    return entries


def anonymous_private_memory(mm):
    """The address ranges of a process's ordinary private anonymous mappings, from its mm image, sorted."""
    (entry,) = image_entries(mm, MM_MAGIC)
    ranges = []
    for number, wire, value in fields(entry):
        if number != 14 or wire != 2:
            continue
        vma = {n: v for n, w, v in fields(value) if w == 0}
        start, end, flags, status = (vma.get(n) for n in (1, 2, 6, 7))
        if None in (start, end, flags, status):
            raise ValueError("a VMA without its bounds, flags or status")
        if start % PAGE or end % PAGE or end < start:
            raise ValueError("a VMA that is not whole pages")
        if status & VMA_ANON_PRIVATE and not status & VMA_SPECIAL and flags & MAP_PRIVATE and flags & MAP_ANONYMOUS and not flags & MAP_HUGETLB:
            ranges.append((start, end))
    ranges.sort()
    return ranges


class ZeroPages:
    """Leaves the zero pages of private anonymous memory out of the images being received (see the module's doc)."""

    def __init__(self):
        self.memory = {}  # pid -> ranges of its private anonymous memory
        self.plans = {}  # pages file name -> plan, or None once two pagemaps named it

    def received(self, dir_fd, name, mode, size):
        """Notes what a file just written says (an mm or a pagemap image); anything it cannot read is left alone."""
        mm = re.fullmatch(rb"mm-(\d+)\.img", name)
        pagemap = re.fullmatch(rb"pagemap-(\d+)\.img", name)
        if not (mm or name.startswith(b"pagemap-")) or size > MAX_PARSED_IMAGE:
            return
        try:
            data = read_file(dir_fd, name)
            if mm:
                self.memory[mm.group(1)] = anonymous_private_memory(data)
                return
            pages_file = pages_file_of(data)
            if pages_file in self.plans:
                self.plans[pages_file] = None  # two pagemaps (a process's, shared memory's) name one pages file: leave it whole
            else:
                self.plans[pages_file] = Plan(name, mode, data, self.memory[pagemap.group(1)]) if pagemap and pagemap.group(1) in self.memory else None
        except (ValueError, LookupError, OSError, MemoryError):
            pass

    def plan(self, name, size):
        """The plan for a pages file about to be received, if its pagemap describes that many pages."""
        plan = self.plans.get(name)
        return plan if plan is not None and plan.size == size else None


def pages_file_of(pagemap):
    """The pages file a pagemap image names (its head's pages_id)."""
    entries = image_entries(pagemap, PAGEMAP_MAGIC)
    if not entries:
        raise ValueError("no pagemap head")
    head = {n: v for n, w, v in fields(entries[0]) if w == 0}
    return b"pages-%d.img" % head[1]


class Plan:
    """One process's pagemap and which pages of its pages file may be left out when zero."""

    def __init__(self, name, mode, data, anonymous):
        self.name = name
        self.mode = mode
        entries = image_entries(data, PAGEMAP_MAGIC)
        self.head = entries[0]
        self.entries = []  # (fields, pages); fields[1] is the entry's address
        for message in entries[1:]:
            f = {}
            for number, wire, value in fields(message):
                if wire != 0:
                    raise ValueError("a pagemap entry field that is not a number")
                f[number] = value
            flags = f.get(4, 0 if f.get(3) else PE_PRESENT)
            # Pages in a parent image: this pagemap is not the simple kind; leave it whole. (PE_LAZY only says
            # that the pages could be loaded lazily; they are in this image.)
            if f.get(3) or flags & ~(PE_PRESENT | PE_LAZY) or not flags & PE_PRESENT:
                raise ValueError("pages elsewhere than this image")
            if f[1] % PAGE:
                raise ValueError("a pagemap entry that does not start a page")
            self.entries.append((f, f[5] if 5 in f else f[2]))
        total = sum(pages for _, pages in self.entries)
        if total > MAX_PLAN_PAGES:
            raise ValueError("more pages than any process has")
        self.size = total * PAGE
        self.droppable = bytearray(total)
        self.dropped = bytearray(total)
        self.dropped_any = False
        starts = [r[0] for r in anonymous]
        at = 0
        for f, pages in self.entries:
            vaddr = f[1]
            end = vaddr + pages * PAGE
            k = max(bisect.bisect_right(starts, vaddr) - 1, 0)
            while k < len(anonymous) and anonymous[k][0] < end:
                lo, hi = max(anonymous[k][0], vaddr), min(anonymous[k][1], end)
                if lo < hi:
                    self.droppable[at + (lo - vaddr) // PAGE : at + (hi - vaddr) // PAGE] = b"\x01" * ((hi - lo) // PAGE)
                k += 1
            at += pages

    def zeros(self, out, offset, length):
        """Zeros at `offset` of the pages file: those it may leave out are, the others are a hole."""
        if offset % PAGE or length % PAGE or offset + length > self.size:
            out.skip(length)
            return
        i, last = offset // PAGE, (offset + length) // PAGE
        while i < last:
            keep = self.droppable.find(0, i, last)
            keep = last if keep == -1 else keep
            if keep > i:
                self.dropped[i:keep] = b"\x01" * (keep - i)
                self.dropped_any = True
                i = keep
            if i < last:
                drop = self.droppable.find(1, i, last)
                drop = last if drop == -1 else drop
                out.skip((drop - i) * PAGE)
                i = drop

    def rewrite(self, dir_fd):
        """Writes the pagemap anew, each entry split around the pages left out (once its pages file is complete)."""
        if not self.dropped_any:
            return
        out = [U32LE.pack(IMG_COMMON_MAGIC) + U32LE.pack(PAGEMAP_MAGIC), U32LE.pack(len(self.head)) + self.head]
        at = 0
        for f, pages in self.entries:
            i = at
            while i < at + pages:
                start = self.dropped.find(0, i, at + pages)
                if start == -1:
                    break
                stop = self.dropped.find(1, start, at + pages)
                stop = at + pages if stop == -1 else stop
                piece = dict(f)
                piece[1] = f[1] + (start - at) * PAGE
                piece[5 if 5 in f else 2] = stop - start
                message = encode_numbers(piece)
                out.append(U32LE.pack(len(message)) + message)
                i = stop
            at += pages
        temp = self.name + b".herd-new"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            data = memoryview(b"".join(out))
            while data:
                data = data[os.write(fd, data) :]
            os.fchmod(fd, self.mode & 0o777)
        finally:
            os.close(fd)
        os.replace(temp, self.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def read_file(dir_fd, name):
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


class Output:
    """A file written by gathered writes: bytes and slices of the prior pile up until a hole or MAX_DATA."""

    def __init__(self, fd):
        self.fd = fd
        self.offset = 0
        self.pending = []
        self.pending_len = 0

    def add(self, data):
        self.pending.append(data)
        self.pending_len += len(data)
        if self.pending_len >= MAX_DATA or len(self.pending) >= 1000:
            self.flush()

    def skip(self, length):
        self.flush()
        self.offset += length

    def flush(self):
        while self.pending:
            n = os.pwritev(self.fd, self.pending, self.offset)
            self.offset += n
            # A short write (rare): drop what went, keep the rest.
            while self.pending and n >= len(self.pending[0]):
                n -= len(self.pending[0])
                self.pending.pop(0)
            if n:
                self.pending[0] = self.pending[0][n:]
        self.pending_len = 0


def valid_name(name):
    return name not in (b"", b".", b"..") and b"/" not in name and b"\0" not in name and name != PRIOR_FILE.encode()


def receive_images(dir_fd, inp):
    try:
        prior_fd = os.open(PRIOR_FILE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        prior_fd = None
    prior_pages = 0 if prior_fd is None else os.fstat(prior_fd).st_size // PAGE
    # The prior mapped: its pages are written out from the mapping, gathered, without a copy of their own.
    prior = memoryview(mmap.mmap(prior_fd, prior_pages * PAGE, prot=mmap.PROT_READ)) if prior_pages else memoryview(b"")
    zero_pages = ZeroPages()
    names = set()
    try:
        while True:
            tag = inp.exactly(1)
            if tag == b"E":
                break
            if tag != b"F":
                fail(f"bad record {tag!r} where a file begins")
            (name_len,) = U16.unpack(inp.exactly(2))
            name = inp.exactly(name_len)
            mode, size = FILE_META.unpack(inp.exactly(FILE_META.size))
            if not valid_name(name):
                fail(f"refused: {name!r} is no plain file name")
            if name in names:
                fail(f"refused: {name!r} twice in the stream")
            names.add(name)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
            plan = zero_pages.plan(name, size)
            try:
                out = Output(fd)
                offset = 0
                while True:
                    tag = inp.exactly(1)
                    if tag == b"C":
                        break
                    if tag == b"D":
                        (length,) = U32.unpack(inp.exactly(4))
                        out.add(inp.exactly(length))
                    elif tag == b"Z":
                        (length,) = U64.unpack(inp.exactly(8))
                        if plan is None:
                            out.skip(length)
                        else:
                            plan.zeros(out, offset, length)
                    elif tag == b"R":
                        place, count = REF.unpack(inp.exactly(REF.size))
                        if place + count > prior_pages:
                            fail(f"{os.fsdecode(name)}: pages {place}+{count} are not in the prior ({prior_pages} pages)")
                        length = count * PAGE
                        out.add(prior[place * PAGE : place * PAGE + length])
                    else:
                        fail(f"bad record {tag!r} in {os.fsdecode(name)}")
                    offset += length
                    if offset > size:
                        fail(f"{os.fsdecode(name)}: more content than its size {size}")
                if offset != size:
                    fail(f"{os.fsdecode(name)}: {offset} bytes of {size}")
                out.flush()
                # Shorter than the source's by the zero pages left out (out.offset counts what was written and the holes).
                os.ftruncate(fd, size if plan is None else out.offset)
                os.fchmod(fd, mode & 0o777)
            finally:
                os.close(fd)
            if plan is not None:
                plan.rewrite(dir_fd)
            zero_pages.received(dir_fd, name, mode, size)
        if not inp.at_end():
            fail("data after the image stream's end")
    finally:
        if prior_fd is not None:
            os.close(prior_fd)
    # Its work is done, and it must not reach the restore (Docker's path archives the whole directory).
    try:
        os.unlink(PRIOR_FILE, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def receive(root):
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    inp = Input()
    magic = inp.exactly(8)
    if magic == PRIOR_MAGIC:
        receive_prior(dir_fd, inp)
    elif magic == IMAGES_MAGIC:
        receive_images(dir_fd, inp)
    else:
        fail("not a herd-pages stream")


def main(argv):
    if len(argv) >= 3 and argv[1] == "prior":
        try:
            pids = [int(p) for p in argv[3:]]
        except ValueError:
            fail("a PID must be a number", 2)
        prior(argv[2], pids)
    elif len(argv) == 2 and argv[1] == "send":
        send()
    elif len(argv) == 2 and argv[1] == "digest":
        print(Digest.local().algorithm.decode())
    elif len(argv) == 3 and argv[1] == "receive":
        receive(argv[2])
    else:
        fail("usage: herd-pages.py prior INDEX PID... > prior  |  herd-pages.py send < index-and-dir > images  |  herd-pages.py digest  |  herd-pages.py receive DIR < stream", 2)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except OSError as err:
        fail(str(err))
