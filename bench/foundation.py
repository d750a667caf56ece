#!/usr/bin/env python3
"""Foundation benchmark: cold start, idle memory, and loopback load on two endpoints.

Usage: bench/foundation.py [--binary target/release/cohort] [--seconds 10]
Needs: a release build (cargo build --release) and wrk (apt-get install wrk).
Measures, on a fresh SQLite data dir:
  - cold start: process start -> first 200 from GET /auth/sign-in (migrations included)
  - idle RSS after start-up and a few requests
  - requests/s and p99 of GET /organizations (signed in) and GET /api/v1/users/profile
    (Bearer token), each with wrk, 4 connections, 2 threads.
Targets from the issue: start < 300 ms, idle RSS < 30 MB, p99 < 5 ms.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import CookieJar


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get_status(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status
    except Exception:
        return None


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wrk(url, seconds, headers, connections=4, warmup=2):
    """(requests/s, p99 ms, non-2xx) with `connections` at once (1: one request after another).

    One wrk thread drives them all: the load generator shares the machine's two cores with
    the server, and a second thread only takes CPU from it. `warmup` seconds of the same load
    go first, unmeasured, so the figures are of a server in its steady state (the pages it
    reads mapped, its pool's connections open) rather than of its first second."""
    base = ["wrk", "-t1", f"-c{connections}"]
    tail = [url]
    for h in headers:
        tail += ["-H", h]
    if warmup > 0:
        subprocess.run(base + [f"-d{warmup}s"] + tail, capture_output=True, text=True, check=True)
    out = subprocess.run(base + [f"-d{seconds}s", "--latency"] + tail,
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    value, unit = float(p99.group(1)), p99.group(2)
    p99_ms = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p99_ms, int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/cohort")
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    data = tempfile.mkdtemp(prefix="cohort-bench-")
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "COHORT_ADDR": f"127.0.0.1:{port}",
           "COHORT_DATA_DIR": data, "RUST_LOG": "warn"}
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen([args.binary, "serve"], env=env, cwd=data,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        while get_status(base + "/auth/sign-in") != 200:
            if proc.poll() is not None:
                sys.exit("cohort exited during start-up")
            time.sleep(0.002)
        start_ms = (time.perf_counter() - t0) * 1000
        link = None
        while link is None:
            line = proc.stdout.readline()
            m = re.search(r"(http://\S+/auth/link/\S+)", line)
            link = m.group(1) if m else None

        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(link).read()
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        assert opener.open(base + "/organizations").status == 200

        token = subprocess.run([args.binary, "token", "create", "--email", "admin@localhost",
                                "--label", "bench"], env=env, cwd=data, capture_output=True,
                               text=True, check=True).stdout.strip().splitlines()[-1]
        req = urllib.request.Request(base + "/api/v1/users/profile",
                                     headers={"Authorization": f"Bearer {token}"})
        assert urllib.request.urlopen(req).status == 200
        time.sleep(1)
        idle = rss_mb(proc.pid)

        org = wrk(base + "/organizations", args.seconds, [f"Cookie: {cookie}"])
        api = wrk(base + "/api/v1/users/profile", args.seconds, [f"Authorization: Bearer {token}"])
        after = rss_mb(proc.pid)

        print(f"cold start to first page (empty SQLite): {start_ms:.0f} ms   (target < 300 ms)")
        print(f"idle RSS: {idle:.1f} MB   (target < 30 MB); after load: {after:.1f} MB")
        for name, (rps, p99, bad) in [("GET /organizations", org), ("GET /api/v1/users/profile", api)]:
            print(f"{name}: {rps:,.0f} req/s, p99 {p99:.2f} ms, non-2xx {bad}   (4 connections, {args.seconds}s; target p99 < 5 ms)")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
