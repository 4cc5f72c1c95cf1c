#!/usr/bin/python3
"""asyncio side of bench/fanout_bench.cpp (issue #3): the idiomatic Python
for each op, one JSON line per run: {"impl", "op", "ns_per_op"}.

  gather_settled_100k  asyncio.gather(return_exceptions=True) over 100,000
                       coroutines limited by asyncio.Semaphore(1000)
  gather_100k          the same without return_exceptions (fail-fast)
  semaphore            uncontended `async with sem` (acquire + release)
  semaphore_handoff    two tasks passing one permit (holding it across a sleep(0))
  channel              1,000,000 values through asyncio.Queue(maxsize=1024)

Usage: /usr/bin/python3 asyncio_fanout.py [--uvloop] [--repeat K] [--ops a,b,...]
"""
import argparse
import asyncio
import json
import time


async def _gather_100k(settled):
    n = 100_000
    sem = asyncio.Semaphore(1000)

    async def trivial(i):
        async with sem:
            return i

    t0 = time.perf_counter_ns()
    out = await asyncio.gather(*(trivial(i) for i in range(n)), return_exceptions=settled)
    assert len(out) == n
    return (time.perf_counter_ns() - t0) / n


async def gather_settled_100k():
    return await _gather_100k(True)


async def gather_100k():
    return await _gather_100k(False)


async def semaphore():
    n = 1_000_000
    sem = asyncio.Semaphore(10)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        async with sem:
            pass
    return (time.perf_counter_ns() - t0) / n


async def semaphore_handoff():
    n = 100_000
    sem = asyncio.Semaphore(1)

    async def player():
        for _ in range(n // 2):
            async with sem:
                await asyncio.sleep(0)

    t0 = time.perf_counter_ns()
    await asyncio.gather(player(), player())
    return (time.perf_counter_ns() - t0) / n


async def channel():
    n = 1_000_000
    q = asyncio.Queue(maxsize=1024)
    done = object()

    async def producer():
        for i in range(n):
            await q.put(i)
        await q.put(done)

    async def consumer():
        s = 0
        while True:
            v = await q.get()
            if v is done:
                return s
            s += v

    t0 = time.perf_counter_ns()
    await asyncio.gather(producer(), consumer())
    return (time.perf_counter_ns() - t0) / n


OPS = {f.__name__: f for f in (gather_settled_100k, gather_100k, semaphore, semaphore_handoff, channel)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--ops", default=",".join(OPS),
                    help="comma-separated subset of: " + ",".join(OPS))
    args = ap.parse_args()
    ops = [o for o in args.ops.split(",") if o]
    for o in ops:
        if o not in OPS:
            ap.error(f"unknown op: {o}")
    impl = "asyncio"
    if args.uvloop:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        impl = "uvloop"
    for name in ops:
        for _ in range(args.repeat):
            ns = asyncio.run(OPS[name]())
            print(json.dumps({"impl": impl, "op": name, "ns_per_op": ns}), flush=True)


if __name__ == "__main__":
    main()
