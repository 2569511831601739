#!/usr/bin/env python3
"""Measures `memkit track` against heaptrack on the same programs: wall time (median of N runs,
including each tool's post-processing: memkit's packing, heaptrack's interpretation and
compression), trace size, and the leaks each reports. Not a test; its table goes in the notes.

    compare_heaptrack.py --memkit build-rel/tools/memkit --bin build-rel/tools/track_tests/bin [-n 3]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import json

PY = """d={}
for i in range(200000):
    d[str(i)]=[i]*(i%7)
    if i%3==0: del d[str(i//2)]
s=sorted(d.items())
print(len(s))"""


def timed(cmd, env=None, cwd=None):
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
    return dt


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--memkit", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("-n", type=int, default=3)
    a = p.parse_args()
    python = os.path.realpath(sys.executable)  # the interpreter itself, not a wrapper script
    workloads = [
        ("churn_prog (1e6 malloc/free)", [os.path.join(a.bin, "churn_prog")], {}),
        ("python3 -c (dict/list churn, PYTHONMALLOC=malloc)", [python, "-c", PY],
         {"PYTHONMALLOC": "malloc"}),
        ("leaks_prog", [os.path.join(a.bin, "leaks_prog")], {}),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, cmd, extra in workloads:
            env = dict(os.environ, **extra)
            base, mk, ht = [], [], []
            for i in range(a.n):
                base.append(timed(cmd, env))
                out = os.path.join(d, f"m{i}.mktrace")
                mk.append(timed([a.memkit, "track", "-o", out, "--", *cmd], env))
                htout = os.path.join(d, f"h{i}")
                ht.append(timed(["heaptrack", "-o", htout, *cmd], env))
            msize = os.path.getsize(os.path.join(d, "m0.mktrace"))
            hfile = next(os.path.join(d, f) for f in os.listdir(d) if f.startswith("h0."))
            hsize = os.path.getsize(hfile)
            rep = json.loads(subprocess.run([a.memkit, "report", "--json", "--no-symbols",
                                             os.path.join(d, "m0.mktrace")],
                                            capture_output=True, text=True).stdout)
            hp = subprocess.run(["heaptrack_print", "-f", hfile], capture_output=True,
                                text=True).stdout
            hleak = re.search(r"total memory leaked: (\S+)", hp)
            hcalls = re.search(r"calls to allocation functions: (\d+)", hp)
            rows.append((name, statistics.median(base), statistics.median(mk),
                         statistics.median(ht), msize, hsize,
                         f"{rep['totals']['allocations']}", hcalls.group(1) if hcalls else "?",
                         f"{rep['leaks']['bytes']}B", hleak.group(1) if hleak else "?"))
            for f in os.listdir(d):
                os.remove(os.path.join(d, f))
    print("| workload | untraced s | memkit track s | heaptrack s | memkit trace bytes | "
          "heaptrack trace bytes | allocations memkit / heaptrack | leaked memkit / heaptrack |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:,} | {r[5]:,} | "
              f"{r[6]} / {r[7]} | {r[8]} / {r[9]} |")


if __name__ == "__main__":
    main()
