#!/usr/bin/env python3
"""Latency of the aggregator's GET /graph/{id}, fan-out vs sequential.

    latency.py --port P [--delay-ms 50] [--requests 20] [--repeat 5]

For each mode, `repeat` rounds of `requests` calls on one keep-alive
connection; for each call the client-side latency and the slowest
sub-query's own elapsed_ms (from the document). Prints one JSON object per
mode with the medians over rounds of the per-round medians.
"""
import argparse
import http.client
import json
import statistics
import time


def round_of(conn, mode, delay, n, first_id):
    lat, slowest, server = [], [], []
    for i in range(n):
        path = f"/graph/{first_id + i}?delay_ms={delay}&mode={mode}&timeout_ms=5000"
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        dt = (time.perf_counter() - t0) * 1000.0
        if resp.status != 200:
            raise SystemExit(f"{path}: HTTP {resp.status}: {body[:200]!r}")
        doc = json.loads(body)
        if doc["ok"] != 12:
            raise SystemExit(f"{path}: incomplete: {doc}")
        lat.append(dt)
        slowest.append(max(r["elapsed_ms"] for r in doc["results"].values()))
        server.append(doc["elapsed_ms"])
    return statistics.median(lat), statistics.median(slowest), statistics.median(server)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay-ms", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--sequential-requests", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
    round_of(conn, "fan_out", 0, 5, 1)  # warm-up: connections in every pool
    for mode, n in (("fan_out", a.requests), ("sequential", a.sequential_requests)):
        rounds = [round_of(conn, mode, a.delay_ms, n, 1 + 37 * r) for r in range(a.repeat)]
        lat = statistics.median(r[0] for r in rounds)
        slow = statistics.median(r[1] for r in rounds)
        srv = statistics.median(r[2] for r in rounds)
        print(json.dumps({"mode": mode, "delay_ms": a.delay_ms, "requests_per_round": n, "rounds": a.repeat,
                          "latency_ms_p50": round(lat, 2), "server_elapsed_ms_p50": round(srv, 2),
                          "slowest_subquery_ms_p50": round(slow, 2),
                          "latency_over_slowest": round(lat / slow, 3)}))


if __name__ == "__main__":
    main()
