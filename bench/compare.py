#!/usr/bin/python3
"""Compare spindle core-runtime benchmarks against peer runtimes.

Inputs (any number, in any order; the kind is detected from the content):
  * Google Benchmark JSON from spindle (--benchmark_format=json or
    --benchmark_out=FILE).  Benchmarks named BM_<op>[/args...][/real_time]
    [_mean|_median|...]; ns_per_op = 1e9 / items_per_second, except
    threadsafe_roundtrip which uses the p50_us user counter * 1000.
  * JSON Lines from the peers (bench/peers/asyncio_core.py, tokio_core):
    {"impl": ..., "op": ..., "ns_per_op": ...[, "p50_us", "p99_us", "note"]}

Repeated measurements are reduced with the median.  Output is a Markdown
table; ratios are peer time / spindle time (how many times faster spindle is).

--runtime (bench/run_runtime.sh) prints instead the one runtime table of
issue #17: a row per core op, columns spindle / Tokio / asyncio / uvloop,
spindle time / Tokio time and the issue's goal for that ratio, then the
stall watchdog's cost on empty steps (BM_empty_steps/K/W, off against on).
In that mode every spindle figure is wall clock, as the peers' are: a
benchmark without UseRealTime reports items_per_second over CPU time, so
its ns per op is scaled by real_time / cpu_time.

Usage: bench/compare.py [--runtime] spindle.json peers_asyncio.jsonl peers_tokio.jsonl ...
Standard library only.
"""

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict

OPS = [
    "spawn_await",
    "await_chain",
    "timer_fire",
    "threadsafe_throughput",
    "threadsafe_roundtrip",
]
LATENCY_OPS = {
    "threadsafe_roundtrip",
    "blocking_roundtrip",
    "blocking_roundtrip_to_thread",
    "portal_roundtrip",
    "portal_roundtrip_submit",
    "portal_roundtrip_block_on",
    "portal_call_sync",
}
PEERS = ["asyncio", "uvloop", "tokio", "nginx"]  # columns appear only for impls with data
RATIO_PEERS = ["asyncio", "tokio", "nginx"]

_AGG_SUFFIX = re.compile(r"_(mean|median|stddev|cv)$")
_TIME_UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def warn(msg):
    print(f"compare.py: warning: {msg}", file=sys.stderr)


class Data:
    """Samples per (impl, op)."""

    def __init__(self):
        self.ns = defaultdict(list)      # (impl, op) -> [ns_per_op]
        self.p50 = defaultdict(list)     # (impl, op) -> [us]
        self.p99 = defaultdict(list)     # (impl, op) -> [us]
        self.notes = defaultdict(set)    # (impl, op) -> {note}
        self.fallback = set()            # (impl, op) measured via real_time
        self.cpu = defaultdict(list)     # (impl, op) -> [CPU ns per op] (Google Benchmark, no UseRealTime)

    def add(self, impl, op, ns, p50=None, p99=None, note=None):
        key = (impl, op)
        self.ns[key].append(float(ns))
        if p50 is not None:
            self.p50[key].append(float(p50))
        if p99 is not None:
            self.p99[key].append(float(p99))
        if note:
            self.notes[key].add(str(note))

    def median(self, table, impl, op):
        vals = table.get((impl, op))
        return statistics.median(vals) if vals else None


# ---------------------------------------------------------------- spindle ---

def _gbench_op(entry):
    """'BM_spawn_await/real_time_median' -> 'spawn_await'."""
    name = entry.get("run_name") or _AGG_SUFFIX.sub("", entry.get("name", ""))
    parts = name.split("/")
    base = parts[0]
    if base.startswith("BM_"):
        base = base[3:]
    # Plain integer arguments name a variant: BM_blocking_throughput/4 -> blocking_throughput_4,
    # BM_empty_steps/0/1 -> empty_steps_0_1.
    for arg in parts[1:]:
        if not arg.isdigit():
            break
        base = f"{base}_{arg}"
    return base or None


def _gbench_ns(op, entry, wall=False):
    """ns per op for one Google Benchmark entry, or None. Returns (ns, is_fallback).
    wall: a rate over CPU time (no /real_time or /manual_time in the name) is
    turned into wall time per item with the entry's real_time / cpu_time."""
    if op in LATENCY_OPS and isinstance(entry.get("p50_us"), (int, float)):
        return entry["p50_us"] * 1000.0, False
    ips = entry.get("items_per_second")
    if isinstance(ips, (int, float)) and ips > 0:
        ns = 1e9 / ips
        name = entry.get("name", "")
        rt, ct = entry.get("real_time"), entry.get("cpu_time")
        if (wall and "/real_time" not in name and "/manual_time" not in name
                and isinstance(rt, (int, float)) and isinstance(ct, (int, float)) and ct > 0):
            ns *= rt / ct
        return ns, False
    rt = entry.get("real_time")
    unit = _TIME_UNIT_NS.get(entry.get("time_unit", "ns"))
    if isinstance(rt, (int, float)) and unit is not None:
        return rt * unit, True  # per iteration, not per item
    return None, False


def load_gbench(doc, path, data, wall=False):
    """Prefer raw iteration entries (median taken here); if the file holds only
    aggregates (--benchmark_report_aggregates_only), use the median aggregate,
    else the mean aggregate."""
    per_op = defaultdict(lambda: {"iteration": [], "median": [], "mean": []})
    for e in doc.get("benchmarks", []):
        if not isinstance(e, dict) or e.get("error_occurred"):
            continue
        op = _gbench_op(e)
        if not op:
            continue
        if e.get("run_type") == "aggregate":
            kind = e.get("aggregate_name")
        else:
            m = _AGG_SUFFIX.search(e.get("name", ""))
            kind = m.group(1) if m and "run_type" not in e else "iteration"
        if kind in per_op[op]:
            per_op[op][kind].append(e)
    if not per_op:
        warn(f"{path}: no benchmarks found")
    for op, kinds in per_op.items():
        entries = kinds["iteration"] or kinds["median"] or kinds["mean"]
        for e in entries:
            ns, fb = _gbench_ns(op, e, wall)
            if ns is None:
                warn(f"{path}: {e.get('name')}: no items_per_second/p50_us/real_time")
                continue
            if fb:
                data.fallback.add(("spindle", op))
            data.add("spindle", op, ns, e.get("p50_us"), e.get("p99_us"))
            ips, name = e.get("items_per_second"), e.get("name", "")
            if (isinstance(ips, (int, float)) and ips > 0
                    and "/real_time" not in name and "/manual_time" not in name):
                data.cpu[("spindle", op)].append(1e9 / ips)


# ------------------------------------------------------------------ peers ---

def load_jsonl(text, path, data):
    n = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
            impl, op, ns = rec["impl"], rec["op"], rec["ns_per_op"]
        except (ValueError, KeyError, TypeError) as exc:
            warn(f"{path}:{lineno}: skipped ({exc})")
            continue
        data.add(impl, op, ns, rec.get("p50_us"), rec.get("p99_us"), rec.get("note"))
        n += 1
    if n == 0:
        warn(f"{path}: no peer records found")


def load(path, data, wall=False):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        warn(f"{path}: {exc}")
        return
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "benchmarks" in doc:
        load_gbench(doc, path, data, wall)
    elif isinstance(doc, dict) and "impl" in doc:  # single-line JSONL file
        load_jsonl(text, path, data)
    else:
        load_jsonl(text, path, data)


# ----------------------------------------------------------------- output ---

def fmt_ns(v):
    if v is None:
        return "n/a"
    if v < 10:
        return f"{v:.2f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def fmt_ratio(peer, base):
    if peer is None or base is None or base <= 0:
        return "n/a"
    r = peer / base
    return f"{r:.2f}x" if r < 100 else f"{r:,.0f}x"


def render(data):
    seen_ops = {op for (_, op) in data.ns}
    ops = [o for o in OPS if o in seen_ops] + sorted(seen_ops - set(OPS))
    if not ops:
        return "(no data)\n"
    out = []
    present = {impl for (impl, _) in data.ns}
    peers = [p for p in PEERS if p in present or p in ("asyncio", "uvloop", "tokio")]
    ratio_peers = [p for p in RATIO_PEERS if p in peers]
    hdr = ["op", "spindle"] + peers + [f"{p}/spindle" for p in ratio_peers]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|")
    for op in ops:
        sp = data.median(data.ns, "spindle", op)
        cell_sp = fmt_ns(sp) + (" †" if ("spindle", op) in data.fallback else "")
        row = [op, cell_sp]
        row += [fmt_ns(data.median(data.ns, p, op)) for p in peers]
        row += [fmt_ratio(data.median(data.ns, p, op), sp) for p in ratio_peers]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("Times are median ns per op (threadsafe_roundtrip: median p50 latency). "
               "Ratios are peer/spindle: >1 means spindle is faster.")
    if data.fallback:
        out.append("† no items_per_second in the Google Benchmark output; "
                   "real_time per iteration used instead.")

    lat_ops = [o for o in ops if any(data.p99.get((i, o)) for i in ["spindle"] + PEERS)]
    if lat_ops:
        out.append("")
        out.append("| latency op | impl | p50 µs | p99 µs |")
        out.append("|---|---|---:|---:|")
        for op in lat_ops:
            for impl in ["spindle"] + PEERS:
                p50 = data.median(data.p50, impl, op)
                p99 = data.median(data.p99, impl, op)
                if p50 is None and p99 is None:
                    continue
                f = lambda v: "n/a" if v is None else f"{v:.2f}"
                out.append(f"| {op} | {impl} | {f(p50)} | {f(p99)} |")

    notes = sorted((impl, op, n) for (impl, op), ns in data.notes.items() for n in ns)
    if notes:
        out.append("")
        out.append("Notes:")
        for impl, op, n in notes:
            out.append(f"- {impl} {op}: {n}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------- runtime table ---

# (row, spindle op, Tokio op, goal for spindle / Tokio), issue #17.
RUNTIME_ROWS = [
    ("spawn_await", "spawn_await", "spawn_await", 0.5),
    ("await_chain", "await_chain", "await_chain", 1.2),
    ("timer_fire", "timer_fire", "timer_fire", 1.0),
    ("threadsafe_throughput", "threadsafe_throughput", "threadsafe_throughput", 1.0),
    ("threadsafe_roundtrip", "threadsafe_roundtrip", "threadsafe_roundtrip", 1.0),
    ("gather_100k", "gather_100k", "gather_100k_inline", 0.8),
    ("gather_settled_100k", "gather_settled_100k", "gather_settled_100k", 1.0),
    ("semaphore", "semaphore", "semaphore", 1.0),
    ("semaphore_handoff", "semaphore_handoff", "semaphore_handoff", 1.0),
    ("channel", "channel", "channel", 1.0),
]
# The stall watchdog's cost (spindle only): BM_empty_steps/K/W, W=0 off, W=1 on;
# CPU time (spindle against itself: other processes' load is left out).
WATCHDOG_ROWS = [
    ("empty step, yield: watchdog off / on", "empty_steps_0_0", "empty_steps_0_1"),
    ("empty step, call_soon: watchdog off / on", "empty_steps_1_0", "empty_steps_1_1"),
]
WATCHDOG_GOAL = 0.02


def render_runtime(data):
    med = lambda impl, op: data.median(data.ns, impl, op)
    out = []
    clocks = sorted(op for (impl, op) in data.ns if impl == "spindle" and op.startswith("clock"))
    for op in clocks:
        out.append(f"Clock read (spindle BM_{op}): {fmt_ns(med('spindle', op))} ns.")
    if clocks:
        out.append("")
    hdr = ["op", "spindle", "Tokio", "asyncio", "uvloop", "spindle / Tokio", "goal"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 2) + ["---"]) + "|")
    for row, op, tokio_op, goal in RUNTIME_ROWS:
        sp, tk = med("spindle", op), med("tokio", tokio_op)
        ratio = sp / tk if sp is not None and tk is not None and tk > 0 else None
        goal_cell = f"≤ {goal:.1f}x"
        if ratio is not None:
            goal_cell += " ✓" if ratio <= goal else " ✗"
        label = row + (" ‡" if tokio_op != op else "")
        out.append("| " + " | ".join([
            label, fmt_ns(sp), fmt_ns(tk), fmt_ns(med("asyncio", op)), fmt_ns(med("uvloop", op)),
            "n/a" if ratio is None else f"{ratio:.2f}x", goal_cell]) + " |")
    for row, off_op, on_op in WATCHDOG_ROWS:
        off, on = data.median(data.cpu, "spindle", off_op), data.median(data.cpu, "spindle", on_op)
        goal_cell = f"on ≤ off + {WATCHDOG_GOAL:.0%}"
        if off is not None and on is not None and off > 0:
            d = on / off - 1
            goal_cell += f": {d:+.1%} " + ("✓" if d <= WATCHDOG_GOAL else "✗")
        out.append("| " + " | ".join([
            row, f"{fmt_ns(off)} / {fmt_ns(on)}", "—", "—", "—", "—", goal_cell]) + " |")
    out.append("")
    out.append("Wall-clock ns per op, the median of the runs (threadsafe_roundtrip: the "
               "median of the runs' p50 latencies). spindle / Tokio is spindle's time over "
               "Tokio's: below 1 spindle is faster; the goal is issue #17's bound on it "
               "(✓ met in this run, ✗ not). What one op is: bench/peers/README.md.")
    notes = []
    js = med("tokio", "gather_100k")
    notes.append("‡ gather_100k, Tokio: `buffer_unordered(1,000)` inside one task "
                 "(tokio_core `gather_100k_inline`); its JoinSet form (`gather_100k`, a window "
                 f"of 1,000 spawned tasks) took {fmt_ns(js)} ns"
                 + (f", spindle / JoinSet {med('spindle', 'gather_100k') / js:.2f}x"
                    if js and med("spindle", "gather_100k") is not None else "")
                 + ". gather_settled_100k, Tokio: the JoinSet form (Tokio has no settled "
                 "buffer_unordered op). asyncio: `asyncio.gather` under `asyncio.Semaphore(1000)`.")
    notes.append("Watchdog rows: spindle only, `BM_empty_steps/K/W`, CPU ns per step of "
                 "1,000,000 empty steps with the stall watchdog off (W=0) and on (W=1, 100 ms); "
                 "CPU time, not wall, as spindle is compared with itself. The goal is a cost ≤ 2%.")
    if data.fallback:
        notes.append("† no items_per_second in the Google Benchmark output; "
                     "real_time per iteration used instead.")
    row_ops = {(i, o) for _, op, tk, _ in RUNTIME_ROWS for i, o in
               [("tokio", tk)] + [(p, op) for p in ("spindle", "asyncio", "uvloop")]}
    for (impl, op), ns in sorted(data.notes.items()):
        if (impl, op) in row_ops and op != "gather_100k_inline":
            notes.extend(f"{impl} {op}: {n}" for n in sorted(ns))
    out.append("")
    out.extend(f"- {n}" for n in notes)
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+",
                    help="Google Benchmark JSON and/or peer JSON Lines files")
    ap.add_argument("-o", "--output", help="write the Markdown here instead of stdout")
    ap.add_argument("--runtime", action="store_true",
                    help="the runtime table of issue #17 (bench/run_runtime.sh), wall clock")
    args = ap.parse_args()

    data = Data()
    for path in args.files:
        load(path, data, wall=args.runtime)
    md = render_runtime(data) if args.runtime else render(data)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(md)
    else:
        sys.stdout.write(md)


if __name__ == "__main__":
    main()
