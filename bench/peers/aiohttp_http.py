#!/usr/bin/python3
"""HTTP/1.1 peer for spindle's http_bench (issue #6): aiohttp on asyncio or uvloop.

  aiohttp_http.py server --port P [--uvloop] [--seconds S]
      aiohttp.web on 127.0.0.1:P, GET / -> 200 "hello" (keep-alive), until
      SIGINT/SIGTERM or S seconds (default 60).
  aiohttp_http.py client --url URL --requests N --concurrency C [--uvloop] [--repeat K]
      one ClientSession with TCPConnector(limit=C); N GETs run by C fixed
      workers sharing a counter; every response checked to be 200 "hello".
      One JSON line per repeat:
      {"impl": "asyncio"|"uvloop", "op": "http_client_c<C>", "ns_per_op": wall/N, "note": ...}

The impl names the event loop, as for the other peers ("tokio" is hyper on
Tokio): "asyncio" is aiohttp on the default asyncio loop, "uvloop" aiohttp
on uvloop. bench/compare.py knows these columns (and asyncio/spindle is the
issue's "client at least 5x aiohttp" ratio).

For /usr/bin/python3 with python3-aiohttp and python3-uvloop (Debian).
"""

import argparse
import asyncio
import json
import signal
import sys
import time

import aiohttp
from aiohttp import web


def impl_name(args):
    return "uvloop" if args.uvloop else "asyncio"


async def serve(args):
    async def hello(_request):
        return web.Response(text="hello", content_type="text/plain", charset=None)

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024, reuse_address=True)
    await site.start()
    print(f"aiohttp_http: serving on 127.0.0.1:{args.port} ({impl_name(args)}) for at most {args.seconds} s",
          file=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.seconds)
    except asyncio.TimeoutError:
        pass
    await runner.cleanup()  # graceful: stops accepting, lets handlers finish
    return 0


async def fetch_all(session, url, n, c):
    """N GETs by C workers; returns (bad, first_error)."""
    next_index = 0
    bad = 0
    first_error = None

    async def worker():
        nonlocal next_index, bad, first_error
        while next_index < n:  # bounded: every pass takes one of the N indices
            next_index += 1
            try:
                async with session.get(url) as resp:
                    body = await resp.read()
                    if resp.status != 200 or body != b"hello":
                        bad += 1
                        first_error = first_error or f"unexpected response: status {resp.status}"
            except Exception as exc:  # noqa: BLE001 - counted and reported
                bad += 1
                first_error = first_error or repr(exc)

    await asyncio.gather(*(worker() for _ in range(min(c, n))))
    return bad, first_error


async def client(args):
    n, c = args.requests, args.concurrency
    connector = aiohttp.TCPConnector(limit=c, limit_per_host=c)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Warm-up (not timed): opens the C connections, as for every peer.
        bad, err = await fetch_all(session, args.url, min(n, 1000), c)
        for _ in range(args.repeat):
            if bad:
                break
            t0 = time.perf_counter_ns()
            b, e = await fetch_all(session, args.url, n, c)
            wall = time.perf_counter_ns() - t0
            bad += b
            err = err or e
            print(json.dumps({
                "impl": impl_name(args),
                "op": f"http_client_c{c}",
                "ns_per_op": wall / n,
                "note": f"aiohttp {aiohttp.__version__} ClientSession; {n} GETs, {c} in flight",
            }), flush=True)
    if bad:
        print(f"aiohttp_http: {bad} bad responses; first: {err}", file=sys.stderr)
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["server", "client"])
    ap.add_argument("--port", type=int)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--url")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args()
    if args.uvloop:
        import uvloop
        uvloop.install()
    if args.mode == "server":
        if args.port is None:
            ap.error("server needs --port")
        return asyncio.run(serve(args))
    if not args.url:
        ap.error("client needs --url")
    return asyncio.run(client(args))


if __name__ == "__main__":
    sys.exit(main())
