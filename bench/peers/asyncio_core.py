#!/usr/bin/python3
"""asyncio / uvloop peer for spindle's core-runtime benchmarks.

Prints JSON Lines, one per measurement:
  {"impl": "asyncio"|"uvloop", "op": <op>, "ns_per_op": <float>
   [, "p50_us": .., "p99_us": ..][, "note": ..]}

Every measurement runs on a fresh event loop.  Timing is taken inside the
running coroutine with time.perf_counter_ns(), except for the portal_* ops:
there the loop runs forever on its own thread and the main thread (a foreign
thread) times its blocking calls into it.

Usage: /usr/bin/python3 asyncio_core.py [--uvloop] [--repeat K] [--ops a,b,...]
"""

import argparse
import asyncio
import concurrent.futures
import json
import os
import queue
import sys
import threading
import time

SPAWN_AWAIT_N = 200_000
AWAIT_CHAIN_N = 1_000_000
TIMER_N = 100_000
TS_THREADS = 4
TS_PER_THREAD = 100_000
RT_N = 10_000
RT_WARMUP = 100
BLOCKING_RT_N = 10_000
BLOCKING_RT_WARMUP = 100
BLOCKING_TP_N = 20_000
BLOCKING_TP_WARMUP = 1_000
BLOCKING_TP_WINDOW = 256
PORTAL_RT_N = 10_000
PORTAL_RT_WARMUP = 100
PORTAL_TP_N = 16_000  # total calls, split evenly among the foreign threads
PORTAL_TP_WARMUP = 10  # per foreign thread, before the barrier

ALL_OPS = (
    "spawn_await",
    "await_chain",
    "timer_fire",
    "threadsafe_throughput",
    "threadsafe_roundtrip",
    "blocking_roundtrip",
    "blocking_roundtrip_to_thread",
    "blocking_throughput_1",
    "blocking_throughput_2",
    "blocking_throughput_4",
    "portal_roundtrip",
    "portal_throughput_1",
    "portal_throughput_4",
    "portal_throughput_16",
)


# 1. spawn_await: create a task of an empty coroutine and await it at once.
async def _empty():
    pass


async def spawn_await():
    loop = asyncio.get_running_loop()
    create_task = loop.create_task
    empty = _empty
    n = SPAWN_AWAIT_N
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await create_task(empty())
    t1 = time.perf_counter_ns()
    return {"ns_per_op": (t1 - t0) / n}


# 2. await_chain: sequential awaits of a coroutine that returns immediately.
async def _noop(i):
    return i


async def await_chain():
    noop = _noop
    n = AWAIT_CHAIN_N
    acc = 0
    t0 = time.perf_counter_ns()
    for i in range(n):
        acc += await noop(i)
    t1 = time.perf_counter_ns()
    assert acc == n * (n - 1) // 2
    return {"ns_per_op": (t1 - t0) / n}


# 3. timer_fire: N call_later timers with delay (i*7919 % 1000) us.
async def timer_fire():
    loop = asyncio.get_running_loop()
    n = TIMER_N
    done = loop.create_future()
    remaining = [n]

    def cb():
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set_result(None)

    call_later = loop.call_later
    t0 = time.perf_counter_ns()
    for i in range(n):
        call_later(((i * 7919) % 1000) * 1e-6, cb)
    await done
    t1 = time.perf_counter_ns()
    return {"ns_per_op": (t1 - t0) / n}


# 4. threadsafe_throughput: 4 OS threads each post no-op callbacks.
async def threadsafe_throughput():
    loop = asyncio.get_running_loop()
    per = TS_PER_THREAD
    total = TS_THREADS * per
    done = loop.create_future()
    count = [0]

    def cb():
        count[0] += 1
        if count[0] == total:
            done.set_result(None)

    barrier = threading.Barrier(TS_THREADS + 1)

    def poster():
        post = loop.call_soon_threadsafe
        barrier.wait()
        for _ in range(per):
            post(cb)

    threads = [threading.Thread(target=poster) for _ in range(TS_THREADS)]
    for t in threads:
        t.start()
    barrier.wait()  # blocks the loop thread only until all posters are ready
    t0 = time.perf_counter_ns()
    await done
    t1 = time.perf_counter_ns()
    for t in threads:
        t.join()
    res = {"ns_per_op": (t1 - t0) / total}
    if total != 400_000:
        res["note"] = f"reduced to {TS_THREADS}x{per} callbacks"
    return res


def _pct(sorted_vals, q):
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


# 5. threadsafe_roundtrip: foreign thread posts a callback that releases it.
async def threadsafe_roundtrip():
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def foreign():
        q = queue.SimpleQueue()
        put = q.put
        get = q.get
        post = loop.call_soon_threadsafe
        clock = time.perf_counter_ns
        lat = []
        try:
            for i in range(RT_WARMUP + RT_N):
                t0 = clock()
                post(put, None)
                get()
                t1 = clock()
                if i >= RT_WARMUP:
                    lat.append(t1 - t0)
            loop.call_soon_threadsafe(done.set_result, lat)
        except BaseException as e:  # surface errors in the loop thread
            loop.call_soon_threadsafe(done.set_exception, e)

    t = threading.Thread(target=foreign)
    t.start()
    lat = await done
    t.join()
    lat.sort()
    p50 = _pct(lat, 0.50)
    p99 = _pct(lat, 0.99)
    return {
        "ns_per_op": float(p50),
        "p50_us": p50 / 1e3,
        "p99_us": p99 / 1e3,
        "note": "call_soon_threadsafe(SimpleQueue.put) + blocking SimpleQueue.get on the foreign thread",
    }


# 6. blocking_roundtrip(_to_thread): from a coroutine on the loop, hand a
#    trivial function to a thread pool and await its result back on the loop.
def _trivial():
    return 42


async def _blocking_roundtrip_lat(call):
    """Per-iteration latency (ns) of `await call()`, after a warm-up."""
    clock = time.perf_counter_ns
    lat = []
    for i in range(BLOCKING_RT_WARMUP + BLOCKING_RT_N):
        t0 = clock()
        r = await call()
        t1 = clock()
        if i >= BLOCKING_RT_WARMUP:
            lat.append(t1 - t0)
    assert r == 42
    return lat


def _lat_result(lat, note):
    lat.sort()
    p50 = _pct(lat, 0.50)
    p99 = _pct(lat, 0.99)
    return {
        "ns_per_op": float(p50),
        "p50_us": p50 / 1e3,
        "p99_us": p99 / 1e3,
        "note": note,
    }


async def blocking_roundtrip():
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        run = loop.run_in_executor
        fn = _trivial
        lat = await _blocking_roundtrip_lat(lambda: run(pool, fn))
    finally:
        pool.shutdown(wait=True)
    return _lat_result(lat, "await loop.run_in_executor(ThreadPoolExecutor(max_workers=1), fn)")


async def blocking_roundtrip_to_thread():
    loop = asyncio.get_running_loop()
    to_thread = asyncio.to_thread
    fn = _trivial
    try:
        lat = await _blocking_roundtrip_lat(lambda: to_thread(fn))
    finally:
        await loop.shutdown_default_executor()
    workers = min(32, (os.cpu_count() or 1) + 4)
    return _lat_result(
        lat,
        f"await asyncio.to_thread(fn): loop's default executor (ThreadPoolExecutor, "
        f"max_workers={workers}) + contextvars copy",
    )


# 7. blocking_throughput_N: N-thread pool, trivial calls with at most
#    BLOCKING_TP_WINDOW in flight (sliding window: Semaphore + done callback).
async def _blocking_window(loop, pool, n):
    """Submit n trivial calls, <= BLOCKING_TP_WINDOW in flight; return when all are back."""
    window = BLOCKING_TP_WINDOW
    sem = asyncio.Semaphore(window)
    acquire = sem.acquire
    release = sem.release
    run = loop.run_in_executor
    fn = _trivial
    done = [0]

    def on_done(fut):
        fut.result()  # surface exceptions
        done[0] += 1
        release()

    for _ in range(n):
        await acquire()
        run(pool, fn).add_done_callback(on_done)
    for _ in range(window):  # drain: every slot free again => all calls are back
        await acquire()
    assert done[0] == n


async def _blocking_throughput(nthreads):
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=nthreads)
    try:
        await _blocking_window(loop, pool, BLOCKING_TP_WARMUP)  # start the pool's threads
        n = BLOCKING_TP_N
        t0 = time.perf_counter_ns()
        await _blocking_window(loop, pool, n)
        t1 = time.perf_counter_ns()
    finally:
        pool.shutdown(wait=True)
    return {
        "ns_per_op": (t1 - t0) / n,
        "note": f"ThreadPoolExecutor(max_workers={nthreads}) + run_in_executor, "
                f"<= {BLOCKING_TP_WINDOW} in flight (Semaphore + done callback)",
    }


async def blocking_throughput_1():
    return await _blocking_throughput(1)


async def blocking_throughput_2():
    return await _blocking_throughput(2)


async def blocking_throughput_4():
    return await _blocking_throughput(4)


# 8. portal_*: the loop runs forever on its own thread; foreign threads submit a
#    trivial coroutine to it and block until its result is back.
#    These are plain functions of the (already running) loop, run on the main thread.
async def _portal_coro():
    return 42


def _run_portal(loop, body):
    """Run `loop` forever on its own thread; call body(loop) on this (foreign) thread."""
    started = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            asyncio.set_event_loop(None)

    t = threading.Thread(target=run, name="loop")
    t.start()
    started.wait()
    try:
        return body(loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join()


def portal_roundtrip(loop):
    submit = asyncio.run_coroutine_threadsafe
    coro = _portal_coro
    clock = time.perf_counter_ns
    lat = []
    for i in range(PORTAL_RT_WARMUP + PORTAL_RT_N):
        t0 = clock()
        r = submit(coro(), loop).result()
        t1 = clock()
        if i >= PORTAL_RT_WARMUP:
            lat.append(t1 - t0)
    assert r == 42
    return _lat_result(lat, "asyncio.run_coroutine_threadsafe(coro(), loop).result() from the main "
                            "thread; loop.run_forever() on its own thread")


def _portal_throughput(loop, nthreads):
    per = PORTAL_TP_N // nthreads
    total = nthreads * per
    barrier = threading.Barrier(nthreads + 1)
    errors = []

    def caller():
        submit = asyncio.run_coroutine_threadsafe
        coro = _portal_coro
        try:
            for _ in range(PORTAL_TP_WARMUP):
                submit(coro(), loop).result()
            barrier.wait()
            acc = 0
            for _ in range(per):
                acc += submit(coro(), loop).result()
            assert acc == 42 * per
        except BaseException as e:  # surface errors on the main thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=caller) for _ in range(nthreads)]
    for t in threads:
        t.start()
    try:
        barrier.wait()  # all callers warmed up and ready
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter_ns()
    for t in threads:
        t.join()
    t1 = time.perf_counter_ns()
    if errors:
        raise errors[0]
    return {
        "ns_per_op": (t1 - t0) / total,
        "note": f"{nthreads} foreign thread(s) x {per} blocking "
                f"run_coroutine_threadsafe(coro(), loop).result() calls; loop.run_forever() on its own thread",
    }


def portal_throughput_1(loop):
    return _portal_throughput(loop, 1)


def portal_throughput_4(loop):
    return _portal_throughput(loop, 4)


def portal_throughput_16(loop):
    return _portal_throughput(loop, 16)


OPS = {
    "spawn_await": spawn_await,
    "await_chain": await_chain,
    "timer_fire": timer_fire,
    "threadsafe_throughput": threadsafe_throughput,
    "threadsafe_roundtrip": threadsafe_roundtrip,
    "blocking_roundtrip": blocking_roundtrip,
    "blocking_roundtrip_to_thread": blocking_roundtrip_to_thread,
    "blocking_throughput_1": blocking_throughput_1,
    "blocking_throughput_2": blocking_throughput_2,
    "blocking_throughput_4": blocking_throughput_4,
}

PORTAL_OPS = {
    "portal_roundtrip": portal_roundtrip,
    "portal_throughput_1": portal_throughput_1,
    "portal_throughput_4": portal_throughput_4,
    "portal_throughput_16": portal_throughput_16,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uvloop", action="store_true", help="use uvloop's event loop")
    ap.add_argument("--repeat", type=int, default=1, help="runs per op (each printed)")
    ap.add_argument("--ops", default=",".join(ALL_OPS),
                    help="comma-separated subset of: " + ",".join(ALL_OPS))
    args = ap.parse_args()

    ops = [o for o in args.ops.split(",") if o]
    for o in ops:
        if o not in OPS and o not in PORTAL_OPS:
            ap.error(f"unknown op: {o}")

    if args.uvloop:
        try:
            import uvloop
        except ImportError as e:
            sys.exit(f"--uvloop requested but uvloop is not importable: {e}")
        new_loop = uvloop.new_event_loop
        impl = "uvloop"
    else:
        new_loop = asyncio.new_event_loop
        impl = "asyncio"

    for op in ops:
        for _ in range(args.repeat):
            loop = new_loop()
            try:
                if op in PORTAL_OPS:
                    res = _run_portal(loop, PORTAL_OPS[op])
                else:
                    asyncio.set_event_loop(loop)
                    res = loop.run_until_complete(OPS[op]())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
            rec = {"impl": impl, "op": op, "ns_per_op": res.pop("ns_per_op")}
            rec.update(res)
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
