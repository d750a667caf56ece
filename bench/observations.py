#!/usr/bin/env python3
"""Observations benchmark (issue 6): ten million seeded observations on SQLite (or PostgreSQL).

Measures, with wrk (4 connections unless said):
  - the Observations tab, filtered by study and data type: the first page, and a page 10,000
    deep (page 10,001 of 20 rows, reached by its key as the Older links do), p99;
  - FHIR search with _count=1000 followed to the end through the `next` links (observations/s),
    for the whole set and for one study and data type;
  - batch uploads: 1,000-entry Bundles posted one after another (observations/s);
  - single uploads: POST /FHIR/R5/Observation, each with its own identifier (requests/s, p99).
Targets on SQLite: page p99 < 30 ms at any depth, FHIR export >= 100,000 observations/s, batch
upload >= 20,000 observations/s, single uploads >= 2,000/s.

Usage: bench/observations.py [--observations 10000000] [--patients 10000] [--data DIR]
                             [--backend sqlite|postgres] [--seconds 10]
--data keeps the seeded data directory (seeding ten million rows takes minutes) and reuses it
when it already holds a database. Needs a release build and wrk.
"""
import argparse
import base64
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import CookieJar

sys.path.insert(0, os.path.dirname(__file__))
from foundation import free_port, get_status, wrk  # noqa: E402

HEART = "omh:heart-rate:2.0"


def run(binary, env, args, **kw):
    return subprocess.run([binary] + args, env=env, capture_output=True, text=True, check=True, **kw)


def post(url, token, body):
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.status, r.read()


def follow(url, token):
    """Walks a search to its end; (observations, seconds, pages)."""
    n, pages, t0 = 0, 0, time.perf_counter()
    while url:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=600) as r:
            body = r.read()
        pages += 1
        n += body.count(b'"resourceType":"Observation"')
        # The links come before the entries: no need to parse a megabyte of JSON.
        m = re.search(rb'"relation":"next","url":"([^"]+)"', body[:4096])
        url = m.group(1).decode() if m else None
    return n, time.perf_counter() - t0, pages


def heart_rate_doc(uuid, t):
    return json.dumps({
        "header": {"uuid": uuid, "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
                   "source_creation_date_time": t, "modality": "sensed"},
        "body": {"heart_rate": {"value": 72, "unit": "beats/min"}, "effective_time_frame": {"date_time": t}},
    })


def resource(patient, device, ident, data_b64):
    return {
        "resourceType": "Observation", "status": "final",
        "identifier": [{"system": "https://bench.example/obs", "value": ident}],
        "subject": {"reference": f"Patient/{patient}"}, "device": {"reference": f"Device/{device}"},
        "code": {"coding": [{"system": "https://w3id.org/openmhealth", "code": HEART}]},
        "valueAttachment": {"contentType": "application/json", "data": data_b64},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/cohort")
    ap.add_argument("--observations", type=int, default=10_000_000)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--data")
    ap.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    data = args.data or tempfile.mkdtemp(prefix="cohort-bench-obs-")
    os.makedirs(data, exist_ok=True)
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "COHORT_ADDR": f"127.0.0.1:{port}",
           "COHORT_DATA_DIR": data, "RUST_LOG": "warn"}
    db_file = os.path.join(data, "cohort.sqlite3")
    if args.backend == "postgres":
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/cohort_bench_obs"
    seeded = args.backend == "sqlite" and os.path.exists(db_file) and os.path.getsize(db_file) > 0
    if not seeded:
        if args.backend == "postgres":
            for sql in ["DROP DATABASE IF EXISTS cohort_bench_obs", "CREATE DATABASE cohort_bench_obs"]:
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc", sql], check=True)
        t0 = time.perf_counter()
        out = run(binary, env, ["seed-demo", "--patients", str(args.patients), "--observations",
                                str(args.observations)], cwd=data).stdout.strip()
        print(f"seed ({time.perf_counter() - t0:.0f} s):\n{out}")
    proc = subprocess.Popen([binary, "serve"], env=env, cwd=data, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        while get_status(base + "/healthz") != 200:
            time.sleep(0.05)
        token = run(binary, env, ["token", "create", "--email", "admin@localhost"], cwd=data).stdout.strip().splitlines()[-1]
        link = run(binary, env, ["create-admin", "--email", "admin@localhost"], cwd=data).stdout.strip().splitlines()[-1]
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(link).read()
        cookie = ["Cookie: " + "; ".join(f"{c.name}={c.value}" for c in jar)]
        auth = [f"Authorization: Bearer {token}"]

        # The demo study, its heart-rate consenters and the demo device, read from the database.
        if args.backend == "sqlite":
            db = sqlite3.connect(db_file)
            q = lambda sql, *p: db.execute(sql, p).fetchall()  # noqa: E731
        else:
            def q(sql, *p):
                sql2 = sql
                for v in p:
                    sql2 = sql2.replace("?", str(v) if isinstance(v, int) else f"'{v}'", 1)
                out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "cohort_bench_obs",
                                      "-Atc", sql2], capture_output=True, text=True, check=True).stdout
                return [tuple(line.split("|")) for line in out.strip().splitlines()]
        study, org = map(int, q("SELECT id, organization_id FROM studies WHERE name = 'Demo Study' ORDER BY id LIMIT 1")[0])
        concept = int(q("SELECT id FROM codeable_concepts WHERE coding_code = ?", HEART)[0][0])
        device = int(q("SELECT id FROM data_sources WHERE name = 'Demo Watch'")[0][0])
        patients = [int(r[0]) for r in q(
            "SELECT c.patient_id FROM consents c JOIN studies s ON s.id = c.study_id "
            "WHERE c.study_id = ? AND c.codeable_concept_id = ? AND c.consented = " +
            ("1" if args.backend == "sqlite" else "TRUE") + " ORDER BY c.patient_id LIMIT 1000", study, concept)]
        total = int(q("SELECT COUNT(*) FROM observations")[0][0])
        print(f"{total} observations; study {study}, heart rate concept {concept}, device {device}")

        # The key of the last row of page 10,000 (20 rows a page) of the filtered tab.
        deep = q("SELECT effective_start, id FROM observations o WHERE o.codeable_concept_id = ? "
                 "AND o.patient_id IN (SELECT patient_id FROM study_patients WHERE study_id = ?) "
                 "ORDER BY o.effective_start DESC, o.id DESC LIMIT 1 OFFSET 199999", concept, study)
        if args.backend == "sqlite":
            # An open connection can hold a snapshot that keeps the server's WAL from being
            # checkpointed: let go of it before measuring.
            db.close()
        tab = f"/observations?organization_id={org}&study_id={study}&code={HEART}&page_size=20"
        cases = [("tab, study + heart rate, first page", tab, cookie)]
        if deep:
            start, oid = deep[0]
            ts = str(start).replace("T", " ")
            fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in ts else "%Y-%m-%d %H:%M:%S"
            import datetime
            micros = int(datetime.datetime.strptime(ts[:26], fmt).replace(
                tzinfo=datetime.timezone.utc).timestamp() * 1_000_000)
            cases.append(("tab, study + heart rate, page 10,001", f"{tab}&after={micros}.{oid}&page=10001", cookie))
        cases.append(("tab, whole organization, first page", f"/observations?organization_id={org}&page_size=20", cookie))
        cases.append(("tab, whole organization, 1000 rows", f"/observations?organization_id={org}&page_size=1000", cookie))
        for name, path, headers in cases:
            rps, p99, bad = wrk(base + path, args.seconds, headers)
            print(f"{name}: {rps:.0f} req/s, p99 {p99:.1f} ms{f', {bad} non-2xx' if bad else ''}")

        n, secs, pages = follow(f"{base}/FHIR/R5/Observation?patient._has:Group:member:_id={study}"
                                f"&code=https://w3id.org/openmhealth|{HEART}&_count=1000", token)
        print(f"FHIR export, study + heart rate: {n} observations in {secs:.1f} s, {pages} pages: {n / secs:.0f} observations/s")
        n, secs, pages = follow(f"{base}/FHIR/R5/Observation?_count=1000", token)
        print(f"FHIR export, everything: {n} observations in {secs:.1f} s, {pages} pages: {n / secs:.0f} observations/s")

        doc = base64.b64encode(heart_rate_doc("00000000-0000-4000-8000-000000000000",
                                              "2026-01-01T08:00:00Z").encode()).decode()
        # Single uploads through wrk: each request its own identifier (run + thread id +
        # counter). As foundation.wrk: one wrk thread, two seconds of the same load first.
        one = json.dumps(resource(patients[0], device, "IDENT", doc))
        prefix, suffix = one.split("IDENT")
        lua = os.path.join(data, "single.lua")

        def singles(duration):
            with open(lua, "w") as f:
                f.write(f"""
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) counter = 0 end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  counter = counter + 1
  local body = {json.dumps(prefix)} .. "s{time.time_ns()}-" .. tid .. "-" .. counter .. {json.dumps(suffix)}
  return wrk.format(nil, "/FHIR/R5/Observation", nil, body)
end
""")
            return subprocess.run(["wrk", "-t1", "-c4", f"-d{duration}s", "--latency", "-s", lua,
                                   base + "/FHIR/R5/Observation"], capture_output=True, text=True, check=True).stdout
        singles(2)
        out = singles(args.seconds)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        print(f"single uploads: {rps:.0f} req/s, p99 {p99.group(1)}{p99.group(2)}"
              f"{', ' + non2xx.group(1) + ' non-2xx' if non2xx else ''}")
        stamp = time.time_ns()
        # Batch uploads: 1,000-entry Bundles, one after another.
        bodies = []
        for b in range(args.batches):
            # One patient's device sending a thousand readings a minute apart, as an app syncs.
            entries = []
            for i in range(1000):
                t = f"2026-01-{1 + b % 28:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z"
                d = base64.b64encode(heart_rate_doc(f"{b:08x}-0000-4000-8000-{i:012x}", t).encode()).decode()
                entries.append({"resource": resource(patients[b % len(patients)], device, f"b{stamp}-{b}-{i}", d),
                                "request": {"method": "POST", "url": "Observation"}})
            bodies.append(json.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}).encode())
        t0 = time.perf_counter()
        created = 0
        for body in bodies:
            status, out = post(f"{base}/FHIR/R5", token, body)
            created += out.count(b'"201 Created"')
        secs = time.perf_counter() - t0
        print(f"batch upload: {created} of {1000 * len(bodies)} created in {secs:.1f} s: {created / secs:.0f} observations/s")

    finally:
        proc.terminate()
        proc.wait()
        if not args.data:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
