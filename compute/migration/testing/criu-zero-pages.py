#!/usr/bin/python3
"""A real CRIU checkpoint through bin/herd-pages.py and back (memory-precopy.test.ts).

  criu-zero-pages.py TOOL WORKDIR   prints a JSON report

Runs two processes (a parent and its forked child) whose memory holds what the zero-page
elision must tell apart: zero pages of private anonymous memory (written, so CRIU dumps them),
a private mapping of a file whose page was overwritten with zeros (its file is not zero), a
page zero in the child but not in the parent and one the other way round (copy-on-write). Each
hashes its memory at the start. Then: CRIU dumps them, the images go through `send` and
`receive`, CRIU restores them from what was received, and each says whether its memory is
what it was. It also sends a copy of the images whose pagemap names a parent image, which the
receiver must write as sent.

This process is the processes' subreaper, so that CRIU finds their PIDs free for the restore.
"""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time

PAGE = 4096
WORKLOAD = r'''
import hashlib, mmap, os, signal, sys, time
PAGE = 4096
root = sys.argv[1]
anon = mmap.mmap(-1, 256 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(256):
    anon[i * PAGE:(i + 1) * PAGE] = bytes([i % 251 + 1]) * PAGE
    if (i // 8) % 2 or i % 5 == 0:
        anon[i * PAGE:(i + 1) * PAGE] = bytes(PAGE)
with open(f"{root}/mapped", "wb") as f:
    f.write(b"\xab" * 16 * PAGE)
fd = os.open(f"{root}/mapped", os.O_RDWR)
private = mmap.mmap(fd, 16 * PAGE, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
private[3 * PAGE:4 * PAGE] = bytes(PAGE)
child = os.fork()
if child == 0:
    anon[PAGE:2 * PAGE] = bytes(PAGE)
    anon[8 * PAGE:9 * PAGE] = b"\x07" * PAGE
    private[5 * PAGE:6 * PAGE] = bytes(PAGE)
who = "child" if child == 0 else "parent"
expected = hashlib.sha256(bytes(anon) + bytes(private)).hexdigest()
def check(*_):
    same = hashlib.sha256(bytes(anon) + bytes(private)).hexdigest() == expected
    with open(f"{root}/verdict-{who}.tmp", "w") as f:
        f.write("same" if same else "changed")
    os.rename(f"{root}/verdict-{who}.tmp", f"{root}/verdict-{who}")
signal.signal(signal.SIGUSR1, check)
with open(f"{root}/ready-{who}.tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(f"{root}/ready-{who}.tmp", f"{root}/ready-{who}")
while True:
    time.sleep(1)
'''


def wait_for(paths, what, seconds=20):
    deadline = time.monotonic() + seconds
    while not all(os.path.exists(p) for p in paths):
        reap()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def gone(pids, seconds=20):
    deadline = time.monotonic() + seconds
    while any(os.path.exists(f"/proc/{p}") for p in pids):
        reap()
        if time.monotonic() > deadline:
            raise SystemExit(f"processes {pids} did not go away")
        time.sleep(0.02)


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{args[0]} {args[1]} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
    return r.stdout


def transfer(tool, images, into):
    os.makedirs(into)
    stream = run([sys.executable, "-I", "-S", tool, "send"], input=f"-\n{images}\n".encode())
    run([sys.executable, "-I", "-S", tool, "receive", into], input=stream)


def pagemap_pages(tool_module, path):
    entries = tool_module.image_entries(open(path, "rb").read(), tool_module.PAGEMAP_MAGIC)
    total = 0
    for message in entries[1:]:
        f = {n: v for n, _, v in tool_module.fields(message)}
        total += f[5] if 5 in f else f[2]
    return total


def main(tool, work):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise SystemExit("cannot become a subreaper")
    import importlib.util

    spec = importlib.util.spec_from_file_location("herd_pages", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    app = os.path.join(work, "app")
    os.makedirs(app)
    script = os.path.join(work, "workload.py")
    with open(script, "w") as f:
        f.write(WORKLOAD)
    subprocess.Popen([sys.executable, "-I", "-S", script, app], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for([f"{app}/ready-parent", f"{app}/ready-child"], "the workload")
    pids = [int(open(f"{app}/ready-{who}").read()) for who in ("parent", "child")]
    images = os.path.join(work, "images")
    os.makedirs(images)
    run(["criu", "dump", "-t", str(pids[0]), "-D", images, "--shell-job", "-o", "dump.log"])
    gone(pids)

    received = os.path.join(work, "received")
    transfer(tool, images, received)
    report = {"files": {}}
    for name in sorted(os.listdir(images)):
        if name.startswith(("pages-", "pagemap-")):
            report["files"][name] = {"dumped": os.path.getsize(f"{images}/{name}"), "received": os.path.getsize(f"{received}/{name}")}
            if name.startswith("pagemap-"):
                report["files"][name].update(dumpedPages=pagemap_pages(module, f"{images}/{name}"), receivedPages=pagemap_pages(module, f"{received}/{name}"))

    # A pagemap naming a parent image (CRIU's incremental dumps): the receiver writes everything as sent.
    parented = os.path.join(work, "parented")
    shutil.copytree(images, parented)
    first = sorted(n for n in os.listdir(parented) if n.startswith("pagemap-") and "shmem" not in n)[0]
    data = open(f"{parented}/{first}", "rb").read()
    entries = module.image_entries(data, module.PAGEMAP_MAGIC)
    f = {n: v for n, _, v in module.fields(entries[1])}
    f[4] |= 1  # PE_PARENT
    entries[1] = module.encode_numbers(f)
    with open(f"{parented}/{first}", "wb") as out:
        out.write(data[:8] + b"".join(len(e).to_bytes(4, "little") + e for e in entries))
    transfer(tool, parented, os.path.join(work, "parented-received"))
    pages = f"pages-{dict((n, v) for n, _, v in module.fields(entries[0]))[1]}.img"
    report["parented"] = {"pagemap": first, "pages": pages, "dumped": os.path.getsize(f"{parented}/{pages}"), "received": os.path.getsize(f"{work}/parented-received/{pages}")}

    run(["criu", "restore", "-D", received, "--shell-job", "-d", "-o", "restore.log"])
    try:
        for p in pids:
            os.kill(p, signal.SIGUSR1)
        wait_for([f"{app}/verdict-parent", f"{app}/verdict-child"], "the verdicts")
        report["verdicts"] = {who: open(f"{app}/verdict-{who}").read() for who in ("parent", "child")}
    finally:
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        gone(pids)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
