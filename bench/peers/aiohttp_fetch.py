#!/usr/bin/python3
"""What `spindle fetch` does, the well-known asyncio way (issue #7's benchmark).

  aiohttp_fetch.py --urls FILE --concurrency C [--out FILE] [--uvloop]

Reads the URL list (one per line; blank lines and #comments skipped), then
one aiohttp ClientSession (TCPConnector(limit=C)) and asyncio.gather over a
task per URL, each holding an asyncio.Semaphore(C) while it makes its GET and
reads the body. One JSON line per input, in completion order, to --out
(default stdout): index, url, ok, status, attempts (always 1: no retries),
elapsed_ms, bytes, and on failure error {kind, message}. Then on stderr
`ok=<n> failed=<n> elapsed_s=<x> rps=<y>` (the time from the first request
to the last result, not the interpreter's start). Exit 0 if every input was
ok, 3 if some failed.

Used by bench/run_fetch.sh; /usr/bin/python3 has python3-aiohttp (3.8) and
python3-uvloop.
"""

import argparse
import asyncio
import json
import sys
import time

import aiohttp


def read_urls(path):
    f = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with f:
        return [s for s in (line.strip() for line in f) if s and not s.startswith("#")]


async def run(urls, concurrency, out):
    sem = asyncio.Semaphore(concurrency)
    counts = {"ok": 0, "failed": 0}
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(index, url):
            async with sem:
                t0 = loop.time()
                rec = {"index": index, "url": url, "ok": False, "status": None, "attempts": 1}
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                    rec["status"] = resp.status
                    rec["bytes"] = len(body)
                    rec["ok"] = 200 <= resp.status < 300
                    if not rec["ok"]:
                        rec["error"] = {"kind": "http_status", "message": f"HTTP {resp.status} {resp.reason}"}
                except asyncio.TimeoutError as e:
                    rec["error"] = {"kind": "timeout", "message": str(e)}
                except aiohttp.InvalidURL as e:
                    rec["error"] = {"kind": "invalid_url", "message": str(e)}
                except aiohttp.ClientConnectorError as e:
                    rec["error"] = {"kind": "connect", "message": str(e)}
                except aiohttp.ClientError as e:
                    rec["error"] = {"kind": "protocol", "message": str(e)}
                rec["elapsed_ms"] = round((loop.time() - t0) * 1e3, 3)
                rec.setdefault("bytes", 0)
            counts["ok" if rec["ok"] else "failed"] += 1
            out.write(json.dumps(rec) + "\n")

        await asyncio.gather(*(one(i, u) for i, u in enumerate(urls)))
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", required=True)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--out", default="-")
    ap.add_argument("--uvloop", action="store_true")
    a = ap.parse_args()
    if a.concurrency < 1:
        ap.error("--concurrency must be at least 1")
    if a.uvloop:
        import uvloop

        uvloop.install()
    urls = read_urls(a.urls)
    out = sys.stdout if a.out == "-" else open(a.out, "w", encoding="utf-8")
    t0 = time.perf_counter()
    with out:
        counts = asyncio.run(run(urls, a.concurrency, out))
    secs = time.perf_counter() - t0
    n = counts["ok"] + counts["failed"]
    print(f"ok={counts['ok']} failed={counts['failed']} elapsed_s={secs:.3f} rps={n / secs if secs > 0 else 0:.1f}",
          file=sys.stderr)
    sys.exit(0 if counts["failed"] == 0 else 3)


if __name__ == "__main__":
    main()
