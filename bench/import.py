#!/usr/bin/env python3
"""CSV import benchmark: a 100,000-row patient list through `cohort import-patients`, on SQLite
and PostgreSQL: preview (--dry-run) time, commit time, rows/s and peak RSS of the process; then
single creates through POST /api/v1/patients for comparison (rate over --seconds, and what
100,000 would take at that rate).

Usage: bench/import.py [--rows 100000] [--seconds 10] [--backend sqlite|postgres|both]
Needs a release build and wrk. PostgreSQL: a server at 127.0.0.1:5432 with trust auth (the
database cohort_bench_import is dropped and made again).
Targets (issue 5): commit at least 50,000 rows/s on SQLite, peak RSS under 200 MB.
"""
import argparse
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from foundation import free_port, get_status  # noqa: E402
from patients import CREATE_LUA  # noqa: E402

FAMILY = ["Smith", "Müller", "O'Brien", "Nguyễn", "García", "Lee", "Åberg", "Kowalski"]
GIVEN = ["Ana", "Bob", "Zoë", "Łukasz", "Mia", "Raj"]


def write_file(path, rows):
    rnd = random.Random(1)
    with open(path, "w", encoding="utf-8") as f:
        f.write("email,family_name,given_name,birth_date,phone,mrn\n")
        for i in range(rows):
            f.write(f"p{i}@import.example.org,{rnd.choice(FAMILY)},{rnd.choice(GIVEN)},"
                    f"{1930 + i % 80}-{1 + i % 12:02d}-{1 + i % 28:02d},+1617555{i % 10000:04d},IMP-{i:07d}\n")


def bench(backend, binary, rows, seconds):
    data = tempfile.mkdtemp(prefix=f"cohort-bench-import-{backend}-")
    env = {"PATH": os.environ.get("PATH", ""), "COHORT_DATA_DIR": data, "RUST_LOG": "warn"}
    if backend == "postgres":
        for sql in ["DROP DATABASE IF EXISTS cohort_bench_import", "CREATE DATABASE cohort_bench_import"]:
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql], check=True)
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/cohort_bench_import"
    try:
        subprocess.run([binary, "seed-demo", "--patients", "1"], env=env, cwd=data, check=True, capture_output=True)
        subprocess.run([binary, "create-admin", "--email", "admin@localhost"], env=env, cwd=data, check=True, capture_output=True)
        csv = os.path.join(data, "patients.csv")
        write_file(csv, rows)
        # Each measurement in its own process, so its peak RSS is its own.
        for label, extra in [("preview (--dry-run)", ["--dry-run"]), ("commit", []), ("again (all unchanged)", [])]:
            code = ("import resource,subprocess,sys,time;t=time.perf_counter();"
                    "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
                    "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)")
            out = subprocess.run([sys.executable, "-c", code, binary, "import-patients", "--org", "1"] + extra + [csv],
                                 env=env, cwd=data, capture_output=True, text=True, check=True).stdout.split()
            took, rss_kb, status = float(out[0]), int(out[1]), int(out[2])
            if status != 0:
                sys.exit(f"import-patients {label} exited {status}")
            print(f"[{backend}] {label:24s} {rows:,d} rows in {took:6.2f} s = {rows / took:9,.0f} rows/s, peak RSS {rss_kb / 1024:5.0f} MB")
        port = free_port()
        env2 = dict(env, COHORT_ADDR=f"127.0.0.1:{port}")
        proc = subprocess.Popen([binary, "serve"], env=env2, cwd=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            while get_status(base + "/healthz") != 200:
                time.sleep(0.05)
            token = subprocess.run([binary, "token", "create", "--email", "admin@localhost"], env=env2, cwd=data,
                                   capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            lua = os.path.join(data, "create.lua")
            with open(lua, "w") as f:
                f.write(CREATE_LUA.replace("ORG", "1").replace("RUN", str(time.time_ns())).replace("TOKEN", token))
            out = subprocess.run(["wrk", "-t2", "-c4", f"-d{seconds}s", "-s", lua, base + "/"],
                                 capture_output=True, text=True, check=True).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            print(f"[{backend}] {'one POST at a time':24s} {rps:9,.0f} patients/s: {rows:,d} would take {rows / rps:6.0f} s")
        finally:
            proc.terminate()
            proc.wait()
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/cohort")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    for backend in (["sqlite", "postgres"] if a.backend == "both" else [a.backend]):
        bench(backend, binary, a.rows, a.seconds)


if __name__ == "__main__":
    main()
