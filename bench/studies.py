#!/usr/bin/env python3
"""Consent review benchmark: a study with many enrolled patients and 5 requested scopes, on
SQLite and on PostgreSQL. Measures the study page with its consent review (first page and a
filtered page; 4 connections), the totals alone, computed afresh, one request at a time
(GET /api/v1/studies/{id}/consent_totals; the page reuses them until the database says they
changed), and the CSV export
(rows per second, whole file).

Usage: bench/studies.py [--patients 100000] [--seconds 10] [--backend sqlite|postgres|both]
Needs a release build and wrk. PostgreSQL: a server at 127.0.0.1:5432 with trust auth (the
database cohort_bench_studies is dropped and made again).
Targets (issue 4): first page p99 < 30 ms, totals < 100 ms, export >= 200,000 rows/s.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import CookieJar

sys.path.insert(0, os.path.dirname(__file__))
from foundation import free_port, get_status, wrk  # noqa: E402


def run(binary, env, args, **kw):
    return subprocess.run([binary] + args, env=env, capture_output=True, text=True, check=True, **kw)


def bench(backend, binary, patients, seconds):
    data = tempfile.mkdtemp(prefix=f"cohort-bench-studies-{backend}-")
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "COHORT_ADDR": f"127.0.0.1:{port}",
           "COHORT_DATA_DIR": data, "RUST_LOG": "warn"}
    if backend == "postgres":
        for sql in ["DROP DATABASE IF EXISTS cohort_bench_studies", "CREATE DATABASE cohort_bench_studies"]:
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql], check=True)
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/cohort_bench_studies"
    out = run(binary, env, ["seed-demo", "--patients", str(patients), "--study"], cwd=data).stdout.strip()
    print(f"[{backend}] seed: {out}")
    study = re.search(r"study (\d+)", out).group(1)
    proc = subprocess.Popen([binary, "serve"], env=env, cwd=data, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        while get_status(base + "/healthz") != 200:
            time.sleep(0.05)
        token = run(binary, env, ["token", "create", "--email", "admin@localhost"], cwd=data).stdout.strip().splitlines()[-1]
        link = run(binary, env, ["create-admin", "--email", "admin@localhost"], cwd=data).stdout.strip().splitlines()[-1]
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(link).read()
        cookie = [f"Cookie: " + "; ".join(f"{c.name}={c.value}" for c in jar)]
        auth = [f"Authorization: Bearer {token}"]
        cases = [
            ("review first page", f"/studies/{study}", cookie),
            ("review first page, 1 at a time", f"/studies/{study}", cookie, 1),
            ("review page 1000", f"/studies/{study}?page=1000", cookie),
            ("review pending only", f"/studies/{study}?only=pending", cookie),
            ("review declined, one scope", f"/studies/{study}?only=declined&scope=4", cookie),
            ("totals (API, 1 at a time)", f"/api/v1/studies/{study}/consent_totals", auth, 1),
        ]
        for name, path, headers, *conns in cases:
            rps, p99, bad = wrk(base + path, seconds, headers, *conns)
            print(f"[{backend}] {name:28s} {rps:8,.0f} req/s  p99 {p99:7.2f} ms  non-2xx {bad}")
        for label, query in [("export all", ""), ("export pending only", "?only=pending")]:
            best = None
            for _ in range(3):
                req = urllib.request.Request(f"{base}/studies/{study}/consents.csv{query}", headers={"Cookie": cookie[0][8:]})
                started = time.perf_counter()
                body = urllib.request.urlopen(req).read()
                took = time.perf_counter() - started
                rows = body.count(b"\n") - 1
                best = took if best is None else min(best, took)
            print(f"[{backend}] {label:28s} {rows:8,d} rows in {best * 1000:7.1f} ms  = {rows / best:10,.0f} rows/s")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/cohort")
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    for backend in (["sqlite", "postgres"] if a.backend == "both" else [a.backend]):
        bench(backend, binary, a.patients, a.seconds)


if __name__ == "__main__":
    main()
