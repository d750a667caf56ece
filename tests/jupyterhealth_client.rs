//! The JupyterHealth Exchange's own Python client, jupyterhealth-client 0.5.0, against a running
//! Cohort: a practitioner's script lists patients, studies, consents and observations (FHIR
//! pages followed to the end, then a pandas DataFrame), and a practitioner of another
//! organization sees none of it.
//!
//! The client lives in a Python virtual environment: $COHORT_JHE_VENV, else target/jhe-venv
//! (.ci/run makes it). When it is missing the test makes it with pip, which needs the network;
//! if that fails the test fails in CI and is skipped, saying why, elsewhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

const CLIENT: &str = "jupyterhealth-client==0.5.0";
const OMH: &str = "https://w3id.org/openmhealth";
/// Seeded scope ids: the foundation migration inserts the 15 codes in a fixed order.
const BP: i64 = 2;
const HEART: i64 = 4;
const BP_CODE: &str = "omh:blood-pressure:4.0";
const HEART_CODE: &str = "omh:heart-rate:2.0";
const REASON: &str = "signed the paper form on 2025-02-20";
/// What Ada and Ben upload: Ada 12 blood pressures and 8 heart rates, Ben 10 blood pressures.
const ADA_BP: i64 = 12;
const ADA_HEART: i64 = 8;
const BEN_BP: i64 = 10;
const UPLOADED: usize = (ADA_BP + ADA_HEART + BEN_BP) as usize;

// ---- the Python side -------------------------------------------------------------------------

fn venv_dir() -> PathBuf {
    match std::env::var_os("COHORT_JHE_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/jhe-venv"),
    }
}

/// Whether `python` imports the client at the pinned version, and pandas.
fn client_importable(python: &Path) -> bool {
    let check =
        "import jupyterhealth_client as j, pandas; assert j.__version__ == '0.5.0', j.__version__";
    Command::new(python)
        .args(["-c", check])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{cmd:?} did not start: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// The virtual environment's python with the client installed, made on first use.
fn venv_python() -> Result<PathBuf, String> {
    let dir = venv_dir();
    let python = dir.join("bin/python");
    if client_importable(&python) {
        return Ok(python);
    }
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    }
    run(Command::new(dir.join("bin/pip")).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        CLIENT,
        "pandas",
    ]))?;
    if client_importable(&python) {
        Ok(python)
    } else {
        Err(format!(
            "{} still cannot import jupyterhealth_client 0.5.0 and pandas after pip install",
            python.display()
        ))
    }
}

/// The python to run the check with; None (after skip_or_fail) when there is none.
async fn python() -> Option<PathBuf> {
    // Both halves of a test ask at once: the first makes the environment, the second waits.
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let ready = actix_web::rt::task::spawn_blocking(|| READY.get_or_init(venv_python).clone())
        .await
        .expect("the venv check ran");
    match ready {
        Ok(python) => Some(python),
        Err(why) => {
            skip_or_fail(&format!(
                "the jupyterhealth-client virtual environment is not usable: {why}"
            ));
            None
        }
    }
}

/// Runs tests/fixtures/jhe_client_check.py as `token`'s user and parses the JSON it prints.
async fn check(python: PathBuf, app: &TestApp, token: &str, mode: &str, ids: [i64; 4]) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jhe_client_check.py"
    );
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(mode)
        .args(ids.map(|i| i.to_string()))
        .env("JHE_URL", &app.url)
        .env("JHE_TOKEN", token)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // The server answers on this runtime's threads, so the script runs off them.
    let out = actix_web::rt::task::spawn_blocking(move || cmd.output())
        .await
        .expect("joined")
        .expect("the python script starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "jhe_client_check.py {mode} failed ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

// ---- the Rust side: set-up through /api/v1 and /FHIR/R5 ---------------------------------------

/// A script with a personal API token.
struct Api<'a> {
    app: &'a TestApp,
    token: String,
}

impl Api<'_> {
    fn new(app: &TestApp, user_id: i64) -> Api<'_> {
        Api {
            app,
            token: app.token(user_id),
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = script()
            .post(self.app.at(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, value)
    }

    /// Posts and insists on `want`; returns the answer.
    async fn ok(&self, path: &str, body: Value, want: u16) -> Value {
        let (status, out) = self.post(path, body.clone()).await;
        assert_eq!(status, want, "POST {path} {body}: {out}");
        out
    }

    async fn id(&self, path: &str, body: Value) -> i64 {
        self.ok(path, body, 201).await["id"]
            .as_i64()
            .expect("an id")
    }

    async fn patient(&self, org: i64, given: &str) -> i64 {
        let email = format!("{}@x.org", given.to_lowercase());
        let body = json!({"organizationId": org, "telecomEmail": email, "nameFamily": "Rivera",
                          "nameGiven": given, "birthDate": "1980-05-17"});
        self.id("/api/v1/patients", body).await
    }

    async fn consent(&self, patient: i64, study: i64, codes: &[&str]) {
        let scopes: Vec<Value> = codes
            .iter()
            .map(|c| json!({"codingSystem": OMH, "codingCode": c, "consented": true}))
            .collect();
        let body = json!({"reason": REASON,
                          "studyScopeConsents": [{"studyId": study, "scopeConsents": scopes}]});
        self.ok(&format!("/api/v1/patients/{patient}/consents"), body, 200)
            .await;
    }
}

fn example(file: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/omh-examples");
    let text = std::fs::read_to_string(format!("{dir}/{file}")).expect("OMH example");
    serde_json::from_str(&text).expect("OMH example is JSON")
}

fn uuid(n: usize) -> String {
    format!("0c0f1a2b-3c4d-4e5f-8a9b-{n:012}")
}

/// A blood pressure data point taken at `at`.
fn blood_pressure(n: usize, systolic: i64, diastolic: i64, at: &str) -> Value {
    let mut p = example("omh_blood-pressure_4-0.json");
    p["header"]["uuid"] = json!(uuid(n));
    p["body"]["systolic_blood_pressure"]["value"] = json!(systolic);
    p["body"]["diastolic_blood_pressure"]["value"] = json!(diastolic);
    p["body"]["effective_time_frame"] = json!({"date_time": at});
    p
}

fn heart_rate(n: usize, bpm: f64, at: &str) -> Value {
    let mut p = example("omh_heart-rate_2-0.json");
    p["header"]["uuid"] = json!(uuid(n));
    p["body"]["heart_rate"]["value"] = json!(bpm);
    p["body"]["effective_time_frame"] = json!({"date_time": at});
    p
}

/// A batch entry creating an Observation of `patient` from `device` carrying `point`.
fn entry(patient: i64, device: i64, code: &str, point: &Value) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(point.to_string());
    json!({
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"reference": format!("Patient/{patient}")},
            "device": {"reference": format!("Device/{device}")},
            "code": {"coding": [{"system": OMH, "code": code}]},
            "valueAttachment": {"contentType": "application/json", "data": data}
        },
        "request": {"method": "POST", "url": "Observation"}
    })
}

fn ada_systolic(i: i64) -> i64 {
    110 + i
}
fn ada_diastolic(i: i64) -> i64 {
    70 + i
}
fn ada_bp_at(i: i64) -> String {
    format!("2025-03-{:02}T08:00:00Z", i + 1)
}
fn ada_bpm(i: i64) -> f64 {
    60.5 + i as f64
}
fn ben_systolic(i: i64) -> i64 {
    140 - i
}

/// What the test made: the organization, study, patients and the uploaded observation ids.
struct World {
    org: i64,
    study: i64,
    ada: i64,
    ben: i64,
    cy: i64,
    source: i64,
    /// Observation ids in upload order: Ada's blood pressures, her heart rates, Ben's.
    uploaded: Vec<i64>,
    /// The same ids in the search's default order: oldest effective time first.
    by_time: Vec<i64>,
    member_uid: i64,
    member_token: String,
}

/// An organization made by the administrator, Mel (a member) with a study asking for blood
/// pressure and heart rate from iHealth, Ada and Ben enrolled and consenting (Ben to blood
/// pressure only), Cy in the organization but not the study, and 30 observations in one batch.
async fn world(app: &TestApp) -> World {
    let admin = Api::new(app, app.admin_user_id());
    let org = admin
        .id(
            "/api/v1/organizations",
            json!({"name": "Heart Lab", "type": "edu", "partOf": 0}),
        )
        .await;
    let (member_uid, _) = app.practitioner("mel@x.org", false);
    let membership = json!({"jheUserId": member_uid, "organizationPartitionerRole": "member"});
    let (status, out) = admin
        .post(&format!("/api/v1/organizations/{org}/user"), membership)
        .await;
    assert!(status == 200 || status == 201, "add Mel: {status} {out}");
    let source_body = json!({"name": "iHealth", "type": "personal_device",
                             "supportedScopes": [BP, HEART]});
    let source = admin.id("/api/v1/data_sources", source_body).await;

    let mel = Api::new(app, member_uid);
    let study_body = json!({"name": "Home BP", "description": "Morning cuff readings.",
                            "organization": org});
    let study = mel.id("/api/v1/studies", study_body).await;
    let base = format!("/api/v1/studies/{study}");
    for scope in [BP, HEART] {
        mel.ok(
            &format!("{base}/scope_requests"),
            json!({"scopeCodeId": scope}),
            201,
        )
        .await;
    }
    mel.ok(
        &format!("{base}/data_sources"),
        json!({"dataSourceId": source}),
        201,
    )
    .await;
    let ada = mel.patient(org, "Ada").await;
    let ben = mel.patient(org, "Ben").await;
    let cy = mel.patient(org, "Cy").await;
    let enrolled = mel
        .ok(
            &format!("{base}/patients"),
            json!({"patientIds": [ada, ben]}),
            200,
        )
        .await;
    assert_eq!(enrolled, json!({"enrolled": 2, "alreadyEnrolled": 0}));
    mel.consent(ada, study, &[BP_CODE, HEART_CODE]).await;
    mel.consent(ben, study, &[BP_CODE]).await;

    let mut entries = Vec::new();
    for i in 0..ADA_BP {
        let p = blood_pressure(
            entries.len(),
            ada_systolic(i),
            ada_diastolic(i),
            &ada_bp_at(i),
        );
        entries.push(entry(ada, source, BP_CODE, &p));
    }
    for i in 0..ADA_HEART {
        let at = format!("2025-03-{:02}T09:30:00Z", i + 1);
        let p = heart_rate(entries.len(), ada_bpm(i), &at);
        entries.push(entry(ada, source, HEART_CODE, &p));
    }
    for i in 0..BEN_BP {
        let at = format!("2025-04-{:02}T07:15:00-07:00", i + 1);
        let p = blood_pressure(entries.len(), ben_systolic(i), 90, &at);
        entries.push(entry(ben, source, BP_CODE, &p));
    }
    assert_eq!(entries.len(), UPLOADED);
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
    let answer = mel.ok("/FHIR/R5", batch, 200).await;
    assert_eq!(answer["type"], "batch-response");
    let prefix = format!("{}/FHIR/R5/Observation/", app.url);
    let uploaded: Vec<i64> = answer["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            assert_eq!(e["response"]["status"], "201 Created", "{e}");
            let location = e["response"]["location"].as_str().expect("a location");
            let id = location
                .strip_prefix(&prefix)
                .expect("an absolute location");
            id.parse().expect("a numeric id")
        })
        .collect();
    assert_eq!(uploaded.len(), UPLOADED);
    assert!(
        uploaded.windows(2).all(|w| w[0] < w[1]),
        "ids in upload order: {uploaded:?}"
    );
    // Effective times in upload order (Ben's are at 14:15 UTC), then ids sorted by them.
    let times: Vec<String> = (0..ADA_BP)
        .map(|i| format!("2025-03-{:02}T08:00", i + 1))
        .chain((0..ADA_HEART).map(|i| format!("2025-03-{:02}T09:30", i + 1)))
        .chain((0..BEN_BP).map(|i| format!("2025-04-{:02}T14:15", i + 1)))
        .collect();
    let mut keyed: Vec<(String, i64)> = times.into_iter().zip(uploaded.iter().copied()).collect();
    keyed.sort();
    let by_time = keyed.into_iter().map(|(_, id)| id).collect();
    World {
        by_time,
        org,
        study,
        ada,
        ben,
        cy,
        source,
        uploaded,
        member_token: mel.token.clone(),
        member_uid,
    }
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| {
            x.as_i64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or_else(|| panic!("not an id: {x}"))
        })
        .collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_else(|| panic!("not a string: {x}")))
        .collect()
}

// ---- the tests -------------------------------------------------------------------------------

on_both_backends!(
    the_python_client_lists_patients_studies_consents_and_every_observation_once,
    |app: TestApp| async move {
        let Some(python) = python().await else {
            return;
        };
        let w = world(&app).await;
        let ids = [w.org, w.study, w.ada, w.ben];
        let out = check(python, &app, &w.member_token, "member", ids).await;
        assert_eq!(out["client_version"], "0.5.0");

        // get_user(): /api/v1/users/profile.
        let user = json!({"id": w.member_uid, "email": "mel@x.org", "firstName": "Pat",
                          "lastName": "Tester", "patient": null});
        assert_eq!(out["user"], user);

        // list_patients(organization_id=...), list_patients(study_id=...).
        let person = |id: i64, given: &str| {
            json!({"id": id, "nameGiven": given, "nameFamily": "Rivera", "birthDate": "1980-05-17",
                   "telecomEmail": format!("{}@x.org", given.to_lowercase())})
        };
        let mut patients = out["patients"].as_array().expect("patients").clone();
        patients.sort_by_key(|p| p["id"].as_i64());
        let expected = vec![
            person(w.ada, "Ada"),
            person(w.ben, "Ben"),
            person(w.cy, "Cy"),
        ];
        assert_eq!(patients, expected);
        assert_eq!(ints(&out["study_patient_ids"]), [w.ada, w.ben]);

        // list_studies().
        let study = json!({"id": w.study, "name": "Home BP", "organization_id": w.org});
        assert_eq!(out["studies"], json!([study]));

        // get_patient_consents(ada), and Ben's consolidated scopes.
        let consents = json!({
            "patient_id": w.ada,
            "consolidated": [BP_CODE, HEART_CODE],
            "pending": [],
            "studies": [{"id": w.study, "organization_id": w.org, "data_sources": ["iHealth"],
                         "scopes": [[BP_CODE, true], [HEART_CODE, true]]}],
        });
        assert_eq!(out["consents"], consents);
        assert_eq!(strs(&out["ben_consolidated"]), [BP_CODE]);

        // list_observations(study_id=..., limit=None): all 30 on one page of the client's 1000.
        assert_eq!(
            ints(&out["study_all"]),
            w.by_time,
            "each once, oldest first"
        );
        let pages = out["study_all_pages"].as_array().expect("pages");
        assert_eq!(pages.len(), 1, "{pages:?}");
        assert_eq!(pages[0]["total"], UPLOADED);
        let first = pages[0]["url"].as_str().unwrap();
        assert!(
            first.starts_with(&format!("{}/FHIR/R5/Observation?", app.url))
                && first.contains("_count=1000"),
            "{first}"
        );

        // At 7 a page the client follows next links: 7+7+7+7+2, each observation exactly once.
        let pages = out["study_paged_pages"].as_array().expect("pages");
        let sizes: Vec<usize> = pages.iter().map(|p| ints(&p["ids"]).len()).collect();
        assert_eq!(sizes, [7, 7, 7, 7, 2], "{pages:?}");
        let raw: Vec<i64> = pages.iter().flat_map(|p| ints(&p["ids"])).collect();
        assert_eq!(raw, w.by_time, "no page repeats or skips one");
        assert_eq!(ints(&out["study_paged"]), w.by_time);
        for (n, page) in pages.iter().enumerate() {
            assert_eq!(page["total"], UPLOADED, "page {}", n + 1);
            let url = page["url"].as_str().unwrap();
            assert!(url.starts_with(&app.url), "absolute: {url}");
            if n > 0 {
                assert!(url.contains(&format!("_page={}", n + 1)), "{url}");
                assert!(url.contains("_cursor="), "{url}");
            }
        }
        // limit=10 stops after the second page.
        assert_eq!(ints(&out["study_limited"]), w.by_time[..10]);
        assert_eq!(out["study_limited_pages"], 2);

        // code= and patient= filters.
        let bpm: Vec<Value> = (0..ADA_HEART).map(|i| json!(ada_bpm(i))).collect();
        assert_eq!(out["ada_heart"], json!(bpm));
        assert_eq!(out["ada_all_count"], ADA_BP + ADA_HEART);
        assert_eq!(out["ben_heart_count"], 0);
        assert_eq!(ints(&out["org_ids"]), w.by_time, "patient.organization");

        // list_observations_df(patient_id=ada, code=Code.BLOOD_PRESSURE).
        let df = &out["df"];
        let ada_bp: Vec<i64> = w.uploaded[..ADA_BP as usize].to_vec();
        assert_eq!(df["rows"], ADA_BP);
        assert_eq!(ints(&df["ids"]), ada_bp, "one row per upload, by id");
        let systolic: Vec<i64> = (0..ADA_BP).map(ada_systolic).collect();
        let diastolic: Vec<i64> = (0..ADA_BP).map(ada_diastolic).collect();
        assert_eq!(ints(&df["systolic"]), systolic);
        assert_eq!(ints(&df["diastolic"]), diastolic);
        assert_eq!(strs(&df["units"]), ["mmHg"]);
        assert_eq!(strs(&df["subjects"]), [format!("Patient/{}", w.ada)]);
        assert_eq!(strs(&df["devices"]), [format!("Device/{}", w.source)]);
        assert_eq!(strs(&df["codes"]), [BP_CODE]);
        assert_eq!(strs(&df["systems"]), [OMH]);
        assert_eq!(strs(&df["statuses"]), ["final"]);
        let identifiers: Vec<String> = (0..ADA_BP as usize)
            .map(|n| format!("urn:uuid:{}", uuid(n)))
            .collect();
        assert_eq!(strs(&df["identifiers"]), identifiers);
        let effective: Vec<String> = (0..ADA_BP)
            .map(|i| ada_bp_at(i).replace('Z', "+00:00"))
            .collect();
        assert_eq!(strs(&df["effective"]), effective, "parsed as UTC");
        assert_eq!(strs(&df["effective_fhir"]), effective, "effectiveDateTime");
        let local: Vec<String> = (0..ADA_BP).map(|i| ada_bp_at(i).replace('Z', "")).collect();
        assert_eq!(strs(&df["effective_local"]), local);
        assert_eq!(strs(&df["last_updated_tz"]), ["UTC"]);
        let columns = strs(&df["columns"]);
        for wanted in [
            "id",
            "code",
            "resource_type",
            "resourceType",
            "meta_lastUpdated",
            "identifier_0_system",
            "systolic_blood_pressure_unit",
            "diastolic_blood_pressure_unit",
            "effective_time_frame_date_time",
            "uuid",
            "modality",
            "schema_id_name",
            "schema_id_version",
            "external_datasheets_0_datasheet_reference",
            "source_creation_date_time",
        ] {
            assert!(columns.contains(&wanted), "{wanted} in {columns:?}");
        }
        assert!(!columns.iter().any(|c| c.starts_with("valueAttachment")));

        // Ben: his blood pressures, with the local time he measured them.
        let ben_systolics: Vec<i64> = (0..BEN_BP).map(ben_systolic).collect();
        let ben_df = json!({"rows": BEN_BP, "systolic": ben_systolics,
                            "first_effective": "2025-04-01T14:15:00+00:00",
                            "first_effective_local": "2025-04-01T07:15:00"});
        assert_eq!(out["ben_df"], ben_df);
        assert_eq!(out["empty_df_rows"], 0, "no heart rates: an empty frame");

        // The capability statement, the catalogue and the client's errors.
        let types = strs(&out["resource_types"]);
        for t in ["Observation", "Patient", "Group", "Organization", "Device"] {
            assert!(types.contains(&t), "{t} in {types:?}");
        }
        assert_eq!(strs(&out["data_sources"]), ["iHealth"]);
        assert_eq!(out["missing_patient"]["status"], 404, "{out}");
        assert_eq!(out["missing_observation"]["status"], 404, "{out}");
        let diagnostics = json!(["Observation/99999999 not found."]);
        assert_eq!(out["missing_observation"]["diagnostics"], diagnostics);
        assert_eq!(out["missing_patient"]["detail"], "Patient not found.");
    }
);

on_both_backends!(
    another_organizations_practitioner_sees_none_of_it_through_the_client,
    |app: TestApp| async move {
        let Some(python) = python().await else {
            return;
        };
        let w = world(&app).await;
        let (oz_uid, oz) = app.practitioner("oz@x.org", false);
        let south = app.org("South", 0, &[(oz, "member")]);
        let oz = Api::new(&app, oz_uid);
        let zed = oz.patient(south, "Zed").await;
        let body = json!({"name": "Sleep", "description": "Nights.", "organization": south});
        let sleep = oz.id("/api/v1/studies", body).await;
        let ids = [w.org, w.study, w.ada, w.ben];
        let out = check(python, &app, &oz.token, "outsider", ids).await;
        assert_eq!(out["patients"], json!([zed]), "only South's patient");
        assert_eq!(out["studies"], json!([sleep]), "only South's study");
        // The FHIR search answers 404 with an OperationOutcome naming what it cannot find.
        for (key, what) in [
            ("by_study", "Study"),
            ("by_patient", "Patient"),
            ("by_org", "Organization"),
        ] {
            let refused = &out[key];
            assert_eq!(refused["status"], 404, "{key}: {refused}");
            let diagnostics = json!([format!("{what} not found.")]);
            assert_eq!(refused["diagnostics"], diagnostics, "{key}: {refused}");
        }
        // /api/v1 answers 404 with a detail, which the client's RequestError shows.
        for key in ["patient", "consents"] {
            let refused = &out[key];
            assert_eq!(refused["status"], 404, "{key}: {refused}");
            assert_eq!(refused["detail"], "Patient not found.", "{key}: {refused}");
            let message = refused["message"].as_str().unwrap();
            assert!(message.ends_with("\nPatient not found."), "{message}");
        }
    }
);
