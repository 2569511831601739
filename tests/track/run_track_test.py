#!/usr/bin/env python3
"""Tests of `memkit track` / `memkit report` (libmemkit_track.so) on programs with known leaks.

    run_track_test.py CASE --memkit PATH --bin DIR --work DIR

Each CASE runs one program of tests/track/ under `memkit track`, reads the trace with
`memkit report --json` and compares what it says with what the program is known to do. The
valgrind, heaptrack and html cases compare with those tools and skip (exit status 77) when they
are not installed. Exit status: 0 passed, 1 failed, 77 skipped.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Env:
    def __init__(self, args):
        self.memkit = args.memkit
        self.bin = args.bin
        os.makedirs(args.work, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix=args.case + ".", dir=args.work)

    def prog(self, name):
        return os.path.join(self.bin, name)

    def path(self, name):
        return os.path.join(self.work, name)

    def track(self, prog, *args, output="trace.mktrace", expect_rc=0, flags=()):
        out = self.path(output)
        r = subprocess.run([self.memkit, "track", *flags, "-o", out, "--", self.prog(prog), *args],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == expect_rc,
              f"memkit track {prog}: exit status {r.returncode}, expected {expect_rc}\n{r.stderr}")
        return out, r

    def report(self, trace, expect_rc=0, extra=()):
        r = subprocess.run([self.memkit, "report", "--json", "--top", "1000", "--frames", "16",
                            *extra, trace], capture_output=True, text=True, timeout=120)
        check(r.returncode == expect_rc,
              f"memkit report {trace}: exit status {r.returncode}, expected {expect_rc}\n{r.stderr}")
        return json.loads(r.stdout), r


def frames_of(group):
    return [f.get("function", "") for f in group["stack"]]


def leaks_from(rep, marker):
    """(blocks, bytes) of the leak groups whose stack passes through a function named marker."""
    blocks = size = 0
    for g in rep["leaks"]["groups"]:
        if any(marker in f for f in frames_of(g)):
            blocks += g["count"]
            size += g["bytes"]
    return blocks, size


def expect_leaks(rep, marker, blocks, size):
    got = leaks_from(rep, marker)
    check(got == (blocks, size),
          f"leaks through {marker}: {got[0]} blocks / {got[1]} bytes, expected {blocks} / {size}\n"
          + json.dumps(rep["leaks"], indent=1)[:4000])


def expect_whole(rep):
    check(rep["trace"]["damage"] is None, f"trace damaged: {rep['trace']['damage']}")
    check(rep["trace"]["complete"], "trace has no end record")


# --- cases ---------------------------------------------------------------------------------

def case_leaks(env):
    trace, _ = env.track("leaks_prog")
    rep, _ = env.report(trace)
    expect_whole(rep)
    # Exactly the three known leaks, each from its own function, and nothing else.
    check(rep["leaks"]["count"] == 3 and rep["leaks"]["bytes"] == 600,
          f"leaks: {rep['leaks']['count']} blocks / {rep['leaks']['bytes']} bytes, expected 3 / 600")
    for fn, size in (("leak_100", 100), ("leak_200", 200), ("leak_300", 300)):
        expect_leaks(rep, fn, 1, size)
        g = next(g for g in rep["leaks"]["groups"] if any(fn in f for f in frames_of(g)))
        top = g["stack"][0]
        check(fn in top.get("function", "") and top.get("file", "").endswith("leaks_prog.cpp")
              and top.get("line", 0) > 0, f"{fn}: innermost frame is {top}")
    t = rep["totals"]
    # 14 freed allocations of the program (pvalloc included) and the 3 leaks, at least.
    check(t["allocations"] >= 17, f"allocations: {t['allocations']}")
    check(t["mismatched_frees"] == 0, f"mismatched frees: {t['mismatched_frees']}")
    check(t["peak_bytes"] >= 1000, f"peak: {t['peak_bytes']}")
    sites = rep["top_sites"]
    check(len(sites["by_bytes"]) > 0 and len(sites["by_count"]) > 0 and len(sites["by_peak"]) > 0,
          "empty site tables")
    check(any(h["min"] <= 300 <= h["max"] for h in rep["size_histogram"]), "histogram")
    # The text form says the same.
    r = subprocess.run([env.memkit, "report", trace], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and "600 B in 3 blocks" in r.stdout and "leak_300" in r.stdout,
          "text report:\n" + r.stdout)


def case_threads(env):
    trace, _ = env.track("threads_prog")
    rep, _ = env.report(trace)
    expect_whole(rep)
    expect_leaks(rep, "leak_64", 8, 512)
    t = rep["totals"]
    check(t["allocations"] >= 8 * 20000 + 8, f"allocations: {t['allocations']}")
    # Blocks freed by a thread other than their allocator are matched: no unknown frees.
    check(t["unknown_frees"] == 0, f"unknown frees: {t['unknown_frees']}")


def case_fork(env):
    trace, _ = env.track("fork_prog")
    children = [f for f in os.listdir(env.work) if re.fullmatch(r"trace\.mktrace\.\d+", f)]
    check(len(children) == 1, f"child traces: {children}")
    parent, _ = env.report(trace)
    expect_whole(parent)
    expect_leaks(parent, "leak_parent", 1, 100)
    check(parent["leaks"]["count"] == 1, f"parent leaks {parent['leaks']['count']}")
    child, _ = env.report(env.path(children[0]))
    expect_whole(child)
    check(child["trace"]["pid"] == int(children[0].rsplit(".", 1)[1]), "child pid")
    check(child["trace"]["ppid"] == parent["trace"]["pid"], "child's parent")
    expect_leaks(child, "leak_child", 2, 100)
    check(child["leaks"]["count"] == 2, f"child leaks {child['leaks']['count']}")
    # The inherited block, and libstdc++'s emergency pool (allocated before the fork) which the
    # tracker releases at exit.
    check(child["totals"]["unknown_frees"] >= 1, "the inherited block's free")


def case_exec(env):
    trace, _ = env.track("exec_prog")
    first, _ = env.report(trace)
    check(first["trace"]["damage"] is None, "damage")
    check(first["trace"]["end"].startswith("exec"), f"end: {first['trace']['end']}")
    expect_leaks(first, "leak_before_exec", 1, 11)
    # (plus libstdc++'s emergency pool, released only at exit)
    later = [f for f in os.listdir(env.work) if re.fullmatch(r"trace\.mktrace\.\d+", f)]
    check(len(later) == 1, f"traces of the exec'd image: {later}")
    second, _ = env.report(env.path(later[0]))
    expect_whole(second)
    check(second["trace"]["pid"] == first["trace"]["pid"], "exec keeps the pid")
    expect_leaks(second, "leak_after_exec", 1, 22)
    check(second["leaks"]["count"] == 1, f"second image leaks {second['leaks']['count']}")


def case_exit_thread(env):
    trace, _ = env.track("exit_thread_prog", expect_rc=5)
    rep, _ = env.report(trace)
    expect_whole(rep)
    expect_leaks(rep, "leak_main", 1, 123)
    expect_leaks(rep, "leak_thread", 1, 77)


def case_quick_exit(env):
    trace, _ = env.track("quick_exit_prog", expect_rc=3)
    rep, _ = env.report(trace)
    expect_whole(rep)
    check(rep["trace"]["end"] == "_exit(3)", f"end: {rep['trace']['end']}")
    expect_leaks(rep, "leak_10", 3, 30)
    check(rep["totals"]["allocations"] >= 1003, f"allocations {rep['totals']['allocations']}")


def case_abort(env):
    trace, r = env.track("abort_prog", expect_rc=134)
    check("killed by" in r.stderr, "memkit track says how the program ended:\n" + r.stderr)
    rep, _ = env.report(trace)
    check(rep["trace"]["damage"] is None, "damage")
    check(rep["trace"]["end"] == "killed by signal 6", f"end: {rep['trace']['end']}")
    expect_leaks(rep, "leak_40", 2, 80)
    check(rep["totals"]["allocations"] >= 502, "allocations")


def case_never_free(env):
    trace, _ = env.track("never_free_prog")
    rep, _ = env.report(trace)
    expect_whole(rep)
    expect_leaks(rep, "leak_16", 10000, 160000)
    groups = [g for g in rep["leaks"]["groups"] if any("leak_16" in f for f in frames_of(g))]
    check(len(groups) == 1, f"{len(groups)} stacks for leak_16, expected 1")


def case_bad_output(env):
    for out in ("/nonexistent-dir/x.mktrace", env.work):
        r = subprocess.run([env.memkit, "track", "-o", out, "--", env.prog("leaks_prog")],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 2, f"-o {out}: exit status {r.returncode}")
        check("cannot write the trace file" in r.stderr, r.stderr)
        check("leaks_prog:" not in r.stderr, "the program ran although the output is unwritable")


def case_unknown_program(env):
    r = subprocess.run([env.memkit, "track", "-o", env.path("t"), "--", "no-such-program-xyz"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 127, f"exit status {r.returncode}")
    check("no-such-program-xyz: command not found" in r.stderr, r.stderr)
    r = subprocess.run([env.memkit, "track", "-o", env.path("t"), "--", env.work],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 126, f"a directory: exit status {r.returncode}")


def corrupt_one(env, flavor):
    flags = ("--raw",) if flavor == "raw" else ()
    trace, _ = env.track("leaks_prog", flags=flags, output=flavor + ".mktrace")
    data = open(trace, "rb").read()
    check(data[:8] == b"MKTRACE" + (b"\x01" if flavor == "raw" else b"\x02"), f"{flavor} magic")
    whole, _ = env.report(trace)
    expect_whole(whole)
    # Truncated in the middle: the report covers the first part and names the offset.
    cut = env.path("cut.mktrace")
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    r = subprocess.run([env.memkit, "report", "--json", cut], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode in (0, 2), f"exit status {r.returncode}\n{r.stderr}")
    rep = json.loads(r.stdout)
    check(not rep["trace"]["complete"], "a truncated trace reads as complete")
    # A cut inside a record is damage; a cut between records is an incomplete trace.
    if rep["trace"]["damage"] is not None:
        check(rep["trace"]["damage"]["offset"] <= len(data) // 2, "offset past the end")
        check(f"damaged at byte {rep['trace']['damage']['offset']}" in r.stderr, r.stderr)
    else:
        check("no end record" in r.stderr, r.stderr)
    check(rep["totals"]["allocations"] <= whole["totals"]["allocations"], "more events than whole")
    # Every prefix: no crash, a readable report, exit status 0 or 2.
    for n in range(9, len(data), max(1, len(data) // 97)):
        with open(cut, "wb") as f:
            f.write(data[:n])
        r = subprocess.run([env.memkit, "report", "--json", "--no-symbols", cut],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode in (0, 2), f"prefix {n}: exit status {r.returncode}\n{r.stderr}")
        json.loads(r.stdout)
    # A byte changed near the end: damage found, at or before that byte.
    bad = bytearray(data)
    if flavor == "raw":
        # The end record is the last: tag 0x7f, reason, status, time delta (4 or more bytes).
        idx = data.rfind(b"\x7f", len(data) - 8)
        check(idx > 0, "end record not found")
        bad[idx] = 0x55  # not a tag
    else:
        idx = len(data) - 10  # inside the compressed stream or its checksum
        bad[idx] ^= 0xff
    badp = env.path("bad.mktrace")
    open(badp, "wb").write(bytes(bad))
    rep, r = env.report(badp, expect_rc=2)
    check(rep["trace"]["damage"] is not None, "damage not found")
    check(rep["trace"]["damage"]["offset"] <= max(idx, len(data)),
          f"damage at {rep['trace']['damage']} > {idx}")
    if flavor == "raw":
        check(rep["trace"]["damage"]["offset"] == idx, f"damage at {rep['trace']['damage']}, not {idx}")
    check(f"damaged at byte {rep['trace']['damage']['offset']}" in r.stderr, r.stderr)
    # Reports on damaged traces still show what was read before the damage.
    check(rep["totals"]["allocations"] > 0, "nothing read before the damage")


def case_corrupt_trace(env):
    corrupt_one(env, "raw")
    corrupt_one(env, "packed")
    # Not a trace at all, an empty file, a missing file.
    junk = env.path("junk")
    open(junk, "wb").write(b"hello world, not a trace")
    r = subprocess.run([env.memkit, "report", junk], capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "not a memkit trace" in r.stderr, r.stderr)
    open(junk, "wb").close()
    r = subprocess.run([env.memkit, "report", junk], capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "empty file" in r.stderr, r.stderr)
    r = subprocess.run([env.memkit, "report", env.path("missing")], capture_output=True, text=True)
    check(r.returncode == 1 and "cannot open" in r.stderr, r.stderr)


def case_packing(env):
    """The packed trace reports exactly what the raw one does, and is smaller."""
    raw, _ = env.track("threads_prog", flags=("--raw",), output="raw.mktrace")
    packed, _ = env.track("threads_prog", output="packed.mktrace")
    check(os.path.getsize(packed) * 2 < os.path.getsize(raw),
          f"packed {os.path.getsize(packed)} bytes, raw {os.path.getsize(raw)}")
    # Same program, different runs: compare the run-independent numbers.
    a, _ = env.report(raw)
    b, _ = env.report(packed)
    for rep in (a, b):
        expect_whole(rep)
        expect_leaks(rep, "leak_64", 8, 512)
        check(rep["totals"]["unknown_frees"] == 0, "unknown frees")
    # Packing a raw trace (what memkit track does when the program ends) keeps every number.
    repacked = env.path("repacked.mktrace")
    r = subprocess.run([env.memkit, "report", "--pack", repacked, raw], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 0, r.stderr)
    check(open(repacked, "rb").read(8) == b"MKTRACE\x02", "not packed")
    c, _ = env.report(repacked)
    for key in ("trace", "totals", "leaks", "top_sites", "size_histogram", "timeline"):
        x, y = a[key], c[key]
        if key == "trace":
            x = {k: v for k, v in x.items() if k not in ("file", "bytes", "packed")}
            y = {k: v for k, v in y.items() if k not in ("file", "bytes", "packed")}
        check(x == y, f"{key} differs after packing:\n{json.dumps(x)[:1500]}\n{json.dumps(y)[:1500]}")


def case_html(env):
    trace, _ = env.track("threads_prog")
    html = env.path("report.html")
    r = subprocess.run([env.memkit, "report", "--html", html, trace], capture_output=True,
                       text=True, timeout=120)
    check(r.returncode == 0, r.stderr)
    page = open(html, encoding="utf-8").read()
    check("<svg" in page and 'id="heap-line"' in page and "leak_64" in page, "page content")
    check("<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", ""),
          "the page loads something from outside")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("skipped: chromium is not installed (Debian package chromium); the page was "
              "written and checked as text only")
        return SKIP
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--dump-dom", "file://" + html], capture_output=True, text=True,
                       timeout=120)
    check(r.returncode == 0, f"chromium: {r.returncode}\n{r.stderr[-2000:]}")
    dom = r.stdout
    check('id="heap-chart"' in dom and "<polyline" in dom, "chart missing from the rendered DOM")
    points = re.search(r'id="heap-line"[^>]*points="([^"]+)"', dom) or \
        re.search(r'points="([^"]+)"[^>]*id="heap-line"', dom)
    check(points is not None and len(points.group(1).split()) >= 3, "chart has no points")
    png = env.path("report.png")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--screenshot=" + png, "--window-size=1000,1400", "file://" + html],
                   capture_output=True, timeout=120)
    check(os.path.exists(png) and os.path.getsize(png) > 1000, "screenshot not written")


def valgrind_in_use(prog, args):
    """(blocks, bytes) still allocated at exit, from valgrind's XML leak records."""
    with tempfile.TemporaryDirectory() as d:
        xml = os.path.join(d, "vg.xml")
        subprocess.run(["valgrind", "--leak-check=full", "--show-leak-kinds=all", "--xml=yes",
                        "--xml-file=" + xml, prog, *args], capture_output=True, timeout=300)
        text = open(xml, encoding="utf-8", errors="replace").read()
    blocks = size = 0
    for m in re.finditer(r"<kind>(Leak_\w+)</kind>.*?<leakedbytes>(\d+)</leakedbytes>\s*"
                         r"<leakedblocks>(\d+)</leakedblocks>", text, re.S):
        size += int(m.group(2))
        blocks += int(m.group(3))
    return blocks, size


def case_valgrind(env):
    if shutil.which("valgrind") is None:
        print("skipped: valgrind is not installed")
        return SKIP
    # valgrind does not support pvalloc; its leak records count what is still allocated.
    for prog, args in (("leaks_prog", ["--no-pvalloc"]), ("never_free_prog", [])):
        trace, _ = env.track(prog, *args)
        rep, _ = env.report(trace)
        ours = (rep["leaks"]["count"], rep["leaks"]["bytes"])
        theirs = valgrind_in_use(env.prog(prog), args)
        check(ours == theirs, f"{prog}: memkit {ours} blocks/bytes at exit, valgrind {theirs}")
        print(f"{prog}: leaked at exit (blocks, bytes): memkit {ours}, valgrind {theirs}")


def heaptrack_leaked(env, prog, args):
    out = env.path("ht." + prog)
    subprocess.run(["heaptrack", "-o", out, env.prog(prog), *args], capture_output=True,
                   timeout=300)
    files = [f for f in os.listdir(env.work) if f.startswith("ht." + prog)]
    check(files, "heaptrack wrote no file")
    r = subprocess.run(["heaptrack_print", "-f", os.path.join(env.work, files[0]),
                        "--print-leaks", "1"], capture_output=True, text=True, timeout=300)
    m = re.search(r"total memory leaked: ([\d.]+)([KMG]?)B?", r.stdout)
    check(m is not None, "heaptrack_print output:\n" + r.stdout[-3000:])
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]
    return float(m.group(1)) * scale, r.stdout


def case_heaptrack(env):
    if shutil.which("heaptrack") is None or shutil.which("heaptrack_print") is None:
        print("skipped: heaptrack is not installed")
        return SKIP
    for prog, args in (("leaks_prog", []), ("never_free_prog", []), ("threads_prog", [])):
        trace, _ = env.track(prog, *args)
        rep, _ = env.report(trace)
        ours = rep["leaks"]["bytes"]
        theirs, _ = heaptrack_leaked(env, prog, args)
        # heaptrack prints 3 significant digits (e.g. "4.70K").
        check(abs(ours - theirs) <= max(5, ours * 0.006),
              f"{prog}: memkit leaked {ours} bytes, heaptrack {theirs}")
        print(f"{prog}: leaked bytes: memkit {ours}, heaptrack {theirs:g}")


CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--memkit", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--work", required=True)
    args = p.parse_args()
    env = Env(args)
    try:
        rc = CASES[args.case](env) or 0
    except Failure as e:
        print(f"FAILED: {args.case}: {e}", file=sys.stderr)
        print(f"(files in {env.work})", file=sys.stderr)
        return 1
    if rc == 0:
        shutil.rmtree(env.work, ignore_errors=True)
        print(f"passed: {args.case}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
