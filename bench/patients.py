#!/usr/bin/env python3
"""Patients benchmark: the Patients page and GET /api/v1/patients with many patients in one
organization, on SQLite and on PostgreSQL; plus single creates through POST /api/v1/patients.

Usage: bench/patients.py [--patients 1000000] [--seconds 10] [--backend sqlite|postgres|both]
Needs a release build and wrk. PostgreSQL: a server at 127.0.0.1:5432 with trust auth (the
database cohort_bench is dropped and made again).
Targets (issue 3): p99 < 20 ms first page and two-term search, < 100 ms for a page 1,000 deep;
>= 5,000 req/s for the API's first page; >= 2,000 single creates/s.
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

CREATE_LUA = r"""
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  counter = 0
end
request = function()
  counter = counter + 1
  local id = string.format("RUN-%d-%d", tid, counter)
  -- Spread over the years the seed uses, so a kept database's searches stay as they were.
  local born = string.format("%d-%02d-%02d", 1930 + (counter * 7 + tid) % 85, 1 + counter % 12, 1 + counter % 28)
  local body = '{"organizationId": ORG, "telecomEmail": "bench-' .. id .. '@example.org", ' ..
    '"nameFamily": "Bench", "nameGiven": "Mark", "birthDate": "' .. born .. '", ' ..
    '"identifiers": [{"system": "urn:bench", "value": "' .. id .. '"}]}'
  return wrk.format("POST", "/api/v1/patients", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"}, body)
end
"""


def run(binary, env, args, **kw):
    return subprocess.run([binary] + args, env=env, capture_output=True, text=True, check=True, **kw)


def bench(backend, binary, patients, seconds, reuse=False, keep=None, only=None):
    data = keep or tempfile.mkdtemp(prefix=f"cohort-bench-{backend}-")
    if keep and backend == "sqlite" and os.path.exists(os.path.join(keep, "seeded")):
        reuse = True
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "COHORT_ADDR": f"127.0.0.1:{port}",
           "COHORT_DATA_DIR": data, "RUST_LOG": "warn"}
    if backend == "postgres":
        if not reuse:
            for sql in ["DROP DATABASE IF EXISTS cohort_bench", "CREATE DATABASE cohort_bench"]:
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql], check=True)
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/cohort_bench"
    if reuse:
        org = "1"
        if keep:
            org = re.search(r"organization (\d+)", open(os.path.join(data, "seeded")).read()).group(1)
        print(f"[{backend}] reusing the seeded database in {data if backend == 'sqlite' else 'cohort_bench'}")
    else:
        out = run(binary, env, ["seed-demo", "--patients", str(patients)], cwd=data).stdout.strip()
        print(f"[{backend}] seed: {out}")
        org = re.search(r"organization (\d+)", out).group(1)
        if keep:
            open(os.path.join(data, "seeded"), "w").write(out)
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
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        auth = [f"Authorization: Bearer {token}"]
        cases = [
            ("page  /patients first page", f"/patients?organization_id={org}", [f"Cookie: {cookie}"]),
            ("page  /patients page 1000", f"/patients?organization_id={org}&page=1000", [f"Cookie: {cookie}"]),
            ("page  /patients q='smith 1980'", f"/patients?organization_id={org}&q=smith+1980", [f"Cookie: {cookie}"]),
            ("api   first page", f"/api/v1/patients?organization_id={org}", auth),
            ("api   page 1000", f"/api/v1/patients?organization_id={org}&page=1000", auth),
            ("api   q='smith 1980'", f"/api/v1/patients?organization_id={org}&q=smith+1980", auth),
        ]
        for name, path, headers in cases:
            if only and only not in name:
                continue
            rps, p99, bad = wrk(base + path, seconds, headers)
            print(f"[{backend}] {name:32s} {rps:8,.0f} req/s  p99 {p99:7.2f} ms  non-2xx {bad}")
        if only and only not in "api   POST /patients (creates)":
            return
        def creates(duration):
            # Each run's e-mails and identifiers are new (RUN): a repeated one would be refused.
            lua = os.path.join(data, "create.lua")
            with open(lua, "w") as f:
                f.write(CREATE_LUA.replace("ORG", org).replace("RUN", str(time.time_ns())).replace("TOKEN", token))
            cmd = ["wrk", "-t1", "-c4", f"-d{duration}s", "--latency", "-s", lua, base + "/"]
            return subprocess.run(cmd + sum([["-H", h] for h in auth], []),
                                  capture_output=True, text=True, check=True).stdout
        # As foundation.wrk: one wrk thread, two seconds of the same load first.
        creates(2)
        out = creates(seconds)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        print(f"[{backend}] {'api   POST /patients (creates)':32s} {rps:8,.0f} req/s  non-2xx {bad.group(1) if bad else 0}")
    finally:
        proc.terminate()
        proc.wait()
        if not keep:
            shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/cohort")
    ap.add_argument("--patients", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    ap.add_argument("--reuse", action="store_true", help="postgres only: measure the cohort_bench database as it is")
    ap.add_argument("--keep", help="sqlite only: seed into this folder once and measure it again on later runs")
    ap.add_argument("--only", help="run only the cases whose name contains this text")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    for backend in (["sqlite", "postgres"] if a.backend == "both" else [a.backend]):
        keep = os.path.abspath(a.keep) if a.keep and backend == "sqlite" else None
        if keep:
            os.makedirs(keep, exist_ok=True)
        bench(backend, binary, a.patients, a.seconds, a.reuse and backend == "postgres", keep, a.only)


if __name__ == "__main__":
    main()
