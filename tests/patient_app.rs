//! The patient's app as JupyterHealth Exchange clients use it: an invitation redeemed for a
//! one-time code, the code traded at /o/token/ with PKCE for a patient token and refreshed,
//! what a patient token reaches (its own record, consents and observations; nothing of anyone
//! else's), data-update requests from the study team, and apps registered as their own clients.

mod common;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{Duration, Utc};
use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{
    api_tokens, audit_events, clients, consents, invitations, oauth_grants, update_requests,
};

// ---- helpers ---------------------------------------------------------------------------------

const OMH: &str = "https://w3id.org/openmhealth";
const BP: i64 = 2;
const HEART: i64 = 4;
const BP_CODE: &str = "omh:blood-pressure:4.0";
const HEART_CODE: &str = "omh:heart-rate:2.0";
const BP_KIND: &str = "blood-pressure_4-0";
const HEART_KIND: &str = "heart-rate_2-0";
const OBS: &str = "/FHIR/R5/Observation";
const TOKEN_URL: &str = "/o/token/";
const ACTION: &str = "PATIENT_ACTION_NEEDED";
const NO_ACTION: &str = "IN_PROGRESS_NO_ACTION_NEEDED";

struct Reply {
    status: u16,
    body: Value,
    cache_control: Option<String>,
}

async fn reply(res: reqwest::Response) -> Reply {
    let status = res.status().as_u16();
    let cache_control = res
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string());
    let text = res.text().await.unwrap();
    let body = match text.is_empty() {
        true => Value::Null,
        false => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {e}: {text}")),
    };
    Reply {
        status,
        body,
        cache_control,
    }
}

/// One call with a bearer token (or none); FHIR bodies go as application/fhir+json.
async fn send(
    app: &TestApp,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = script().request(method, app.at(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        let ctype = match path.starts_with("/FHIR") {
            true => "application/fhir+json",
            false => "application/json",
        };
        req = req.header("content-type", ctype).body(b.to_string());
    }
    reply(req.send().await.unwrap()).await
}

async fn get(app: &TestApp, token: &str, path: &str) -> Reply {
    send(app, Some(token), "GET", path, None).await
}

/// A call that must answer `status`; returns the body.
async fn expect(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
    status: u16,
) -> Value {
    let r = send(app, Some(token), method, path, Some(body)).await;
    assert_eq!(r.status, status, "{method} {path}: {}", r.body);
    r.body
}

/// The reply is an API error with this status and a message in `detail`.
fn refused(r: &Reply, status: u16) -> String {
    assert_eq!(r.status, status, "{}", r.body);
    let detail = r.body["detail"].as_str();
    let detail = detail.unwrap_or_else(|| panic!("no detail in {}", r.body));
    assert!(!detail.is_empty());
    detail.to_string()
}

/// The reply is an RFC 6749 error with this status and code.
fn oauth_error(r: &Reply, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["error"], error, "{}", r.body);
    let description = r.body["error_description"].as_str().unwrap_or_default();
    assert!(!description.is_empty(), "{}", r.body);
}

/// Sorted keys of an object, space separated.
fn keys(v: &Value) -> String {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let mut k: Vec<&str> = obj.keys().map(String::as_str).collect();
    k.sort();
    k.join(" ")
}

/// Some fields of an object (names split by spaces), as a JSON list, to compare in one go.
fn pick(v: &Value, names: &str) -> Value {
    Value::Array(names.split_whitespace().map(|k| v[k].clone()).collect())
}

fn id_of(v: &Value) -> i64 {
    v["id"]
        .as_i64()
        .or_else(|| v["id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("no id in {v}"))
}

fn example(kind: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/omh-examples");
    let path = format!("{dir}/omh_{kind}.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An Observation of `kind` for `patient`, its data point numbered `n` (its own uuid).
fn obs(patient: i64, device: i64, kind: &str, n: u32) -> (Value, Value) {
    let mut point: Value = serde_json::from_str(&example(kind)).unwrap();
    point["header"]["uuid"] = json!(format!("bbbb1234-1a2b-3c4d-5e6f-{n:012}"));
    point["body"]["effective_time_frame"] =
        json!({"date_time": format!("2025-05-{:02}T08:00:00Z", n % 28 + 1)});
    let code = if kind == BP_KIND { BP_CODE } else { HEART_CODE };
    let data = base64::engine::general_purpose::STANDARD.encode(point.to_string());
    let resource = json!({
        "resourceType": "Observation",
        "code": {"coding": [{"system": OMH, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "device": {"reference": format!("Device/{device}")},
        "valueAttachment": {"contentType": "application/json", "data": data},
    });
    (resource, point)
}

/// Uploads one Observation that must be accepted; returns its id.
async fn upload(app: &TestApp, token: &str, resource: &Value) -> i64 {
    let r = send(app, Some(token), "POST", OBS, Some(resource.clone())).await;
    assert_eq!(r.status, 201, "{}", r.body);
    id_of(&r.body)
}

/// The ids of the Observations a FHIR search finds.
async fn found(app: &TestApp, token: &str, query: &str) -> Vec<i64> {
    let r = get(app, token, &format!("{OBS}?_count=1000&{query}")).await;
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    let entries = r.body["entry"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<i64> = entries.iter().map(|e| id_of(&e["resource"])).collect();
    ids.sort();
    assert_eq!(r.body["total"], json!(ids.len()), "{}", r.body);
    ids
}

/// A patient of `org`, e-mail `<given>@x.org`; returns (id, user id).
async fn patient(app: &TestApp, token: &str, org: i64, given: &str) -> (i64, i64) {
    let email = format!("{}@x.org", given.to_lowercase());
    let body = json!({"organizationId": org, "nameFamily": "Tester", "nameGiven": given,
                      "telecomEmail": email});
    let out = expect(app, token, "POST", "/api/v1/patients", body, 201).await;
    (id_of(&out), out["jheUserId"].as_i64().unwrap())
}

/// An active study of `org` requesting `scopes` from `device`, with `patients` enrolled.
async fn study(
    app: &TestApp,
    token: &str,
    org: i64,
    name: &str,
    scopes: &[i64],
    device: i64,
    patients: &[i64],
) -> i64 {
    let body = json!({"name": name, "description": "Readings.", "organization": org});
    let id = id_of(&expect(app, token, "POST", "/api/v1/studies", body, 201).await);
    let path = format!("/api/v1/studies/{id}");
    for s in scopes {
        let body = json!({ "scopeCodeId": s });
        expect(
            app,
            token,
            "POST",
            &format!("{path}/scope_requests"),
            body,
            201,
        )
        .await;
    }
    let body = json!({ "dataSourceId": device });
    expect(
        app,
        token,
        "POST",
        &format!("{path}/data_sources"),
        body,
        201,
    )
    .await;
    if !patients.is_empty() {
        let body = json!({ "patientIds": patients });
        expect(app, token, "POST", &format!("{path}/patients"), body, 200).await;
    }
    id
}

/// A practitioner records the patient's decisions, as from a signed paper form.
async fn consent_for(app: &TestApp, token: &str, patient: i64, study: i64, d: &[(&str, bool)]) {
    let body = json!({"reason": "paper form signed",
                      "studyScopeConsents": [{"studyId": study, "scopeConsents": items(d)}]});
    let path = format!("/api/v1/patients/{patient}/consents");
    expect(app, token, "POST", &path, body, 200).await;
}

fn items(decisions: &[(&str, bool)]) -> Vec<Value> {
    let item =
        |code: &str, yes: bool| json!({"codingSystem": OMH, "codingCode": code, "consented": yes});
    decisions.iter().map(|(c, yes)| item(c, *yes)).collect()
}

/// The patient's own decisions through its app (`who` is "me" or its id); no reason given.
async fn decide(app: &TestApp, token: &str, who: &str, study: i64, d: &[(&str, bool)]) -> Reply {
    let body = json!({"studyScopeConsents": [{"studyId": study, "scopeConsents": items(d)}]});
    let path = format!("/api/v1/patients/{who}/consents");
    send(app, Some(token), "PATCH", &path, Some(body)).await
}

/// The stored decision on one scope: (consented, actor user id, reason).
fn stored_consent(
    app: &TestApp,
    study: i64,
    patient: i64,
    scope: i64,
) -> Option<(bool, Option<i64>, Option<String>)> {
    consents::table
        .filter(consents::study_id.eq(study))
        .filter(consents::patient_id.eq(patient))
        .filter(consents::codeable_concept_id.eq(scope))
        .select((
            consents::consented,
            consents::actor_user_id,
            consents::reason,
        ))
        .first(&mut *app.conn())
        .optional()
        .unwrap()
}

/// A new invitation link for `patient`, leading to `client` (Cohort's own page if None).
async fn invite(app: &TestApp, token: &str, patient: i64, client: Option<&str>) -> String {
    let mut body = json!({ "patient_id": patient });
    if let Some(c) = client {
        body["client_id"] = json!(c);
    }
    let out = expect(app, token, "POST", "/api/v1/invitation", body, 201).await;
    out["invitationLink"].as_str().unwrap().to_string()
}

/// The token at the end of a link (after its last `/` or `=`).
fn link_token(link: &str) -> &str {
    link.rsplit(['/', '=']).next().unwrap()
}

/// What PKCE wants: the unpadded base64url of the link token's bytes.
fn verifier(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(token.as_bytes())
}

async fn redeem(app: &TestApp, token: &str) -> Reply {
    let path = format!("/api/v1/invitation/{token}");
    reply(script().post(app.at(&path)).send().await.unwrap()).await
}

async fn token_call(app: &TestApp, form: &[(&str, &str)]) -> Reply {
    let res = script().post(app.at(TOKEN_URL)).form(form).send().await;
    reply(res.unwrap()).await
}

/// Trades `code` at the token endpoint; an empty `redirect_uri` is left out.
async fn trade(app: &TestApp, code: &str, verifier: &str, client: &str, uri: &str) -> Reply {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", client),
        ("code_verifier", verifier),
    ];
    if !uri.is_empty() {
        form.push(("redirect_uri", uri));
    }
    token_call(app, &form).await
}

/// Trades a grant's code with the verifier of `link_token`, without a redirect_uri.
async fn exchange(app: &TestApp, grant: &Value, link_token: &str, client: &str) -> Reply {
    let code = grant["code"].as_str().unwrap();
    trade(app, code, &verifier(link_token), client, "").await
}

async fn refresh(app: &TestApp, refresh_token: &str, client: &str) -> Reply {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client),
    ];
    token_call(app, &form).await
}

type Form<'a> = Vec<(&'a str, &'a str)>;

struct Tokens {
    access: String,
    refresh: String,
}

fn tokens(r: &Reply) -> Tokens {
    assert_eq!(r.status, 200, "{}", r.body);
    let s = |k: &str| r.body[k].as_str().unwrap_or_default().to_string();
    let t = Tokens {
        access: s("access_token"),
        refresh: s("refresh_token"),
    };
    assert!(!t.access.is_empty() && !t.refresh.is_empty(), "{}", r.body);
    t
}

/// Invitation → redemption → token exchange: the patient's app, connected.
async fn connect(app: &TestApp, practitioner: &str, patient: i64) -> Tokens {
    let link = invite(app, practitioner, patient, None).await;
    let token = link_token(&link);
    let r = redeem(app, token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    tokens(&exchange(app, &r.body["grant"], token, "cohort").await)
}

/// North (mel a member) with ann and cy, enrolled in "Heart study" (blood pressure and heart
/// rate from the Omron); South (oz a member) with bob in "South study". Nobody has consented.
struct World {
    mel: String,
    oz: String,
    north: i64,
    device: i64,
    ann: i64,
    ann_user: i64,
    cy: i64,
    bob: i64,
    study: i64,
    south_study: i64,
}

async fn world(app: &TestApp) -> World {
    let (mel_user, mel_p) = app.practitioner("mel@x.org", false);
    let (oz_user, oz_p) = app.practitioner("oz@x.org", false);
    let (su_user, _) = app.practitioner("su@x.org", true);
    let north = app.org("North", 0, &[(mel_p, "member")]);
    let south = app.org("South", 0, &[(oz_p, "member")]);
    let (mel, oz, su) = (app.token(mel_user), app.token(oz_user), app.token(su_user));
    let body = json!({"name": "Omron", "type": "personal_device", "supportedScopes": [BP, HEART]});
    let device = id_of(&expect(app, &su, "POST", "/api/v1/data_sources", body, 201).await);
    let (ann, ann_user) = patient(app, &mel, north, "Ann").await;
    let (cy, _) = patient(app, &mel, north, "Cy").await;
    let (bob, _) = patient(app, &oz, south, "Bob").await;
    let scopes = [BP, HEART];
    let heart = study(app, &mel, north, "Heart study", &scopes, device, &[ann, cy]).await;
    let south_study = study(app, &oz, south, "South study", &scopes, device, &[bob]).await;
    World {
        mel,
        oz,
        north,
        device,
        ann,
        ann_user,
        cy,
        bob,
        study: heart,
        south_study,
    }
}

fn update_path(study: i64, patient: i64) -> String {
    format!("/api/v1/studies/{study}/patients/{patient}/update_request")
}

/// Asks for fresh data, which must be accepted; returns the reply's status field.
async fn ask_update(app: &TestApp, token: &str, study: i64, patient: i64) -> String {
    let path = update_path(study, patient);
    let out = expect(app, token, "POST", &path, json!({}), 201).await;
    assert_eq!(keys(&out), "id patientId status studyId", "{out}");
    assert_eq!(pick(&out, "studyId patientId"), json!([study, patient]));
    assert!(out["id"].as_i64().is_some(), "{out}");
    out["status"].as_str().unwrap().to_string()
}

// ---- invitation redemption -------------------------------------------------------------------

on_both_backends!(
    redeeming_an_invitation_gives_a_one_time_code_for_cohorts_own_client,
    |app: TestApp| async move {
        let w = world(&app).await;
        let link = invite(&app, &w.mel, w.ann, None).await;
        assert!(link.starts_with(&app.at("/invite/")), "{link}");
        let token = link_token(&link);
        let before = Utc::now();
        let r = redeem(&app, token).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(keys(&r.body), "expires grant token_endpoint");
        let grant = &r.body["grant"];
        assert_eq!(keys(grant), "client_id code grant_type redirect_uri");
        let expected = json!(["authorization_code", app.at("/invite/connected"), "cohort"]);
        assert_eq!(pick(grant, "grant_type redirect_uri client_id"), expected);
        let code = grant["code"].as_str().unwrap();
        assert!(code.len() >= 20, "a code hard to guess: {code}");
        assert_ne!(code, token);
        assert_eq!(r.body["token_endpoint"], json!(app.at("/o/token/")));
        let expires = r.body["expires"].as_str().unwrap();
        let expires = chrono::DateTime::parse_from_rfc3339(expires)
            .unwrap_or_else(|e| panic!("{expires} is not RFC 3339: {e}"))
            .with_timezone(&Utc);
        let left = expires - before;
        assert!(
            left > Duration::minutes(5) && left <= Duration::minutes(11),
            "a code lasts minutes: {left}"
        );
        // The invitation is used up, and says so.
        let status: String = invitations::table
            .filter(invitations::patient_id.eq(w.ann))
            .select(invitations::status)
            .first(&mut *app.conn())
            .unwrap();
        assert_eq!(status, "redeemed");
        assert!(app
            .audit_actions()
            .contains(&"invitation.redeem".to_string()));

        // A second redemption, by this app or another, is refused: the link connects once.
        let again = redeem(&app, token).await;
        let says = refused(&again, 409);
        assert!(says.contains("already used"), "{says}");
        let codes: i64 = oauth_grants::table
            .filter(oauth_grants::kind.eq("code"))
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(codes, 1, "no second code was made");
    }
);

on_both_backends!(
    an_unknown_replaced_or_expired_invitation_is_refused_with_its_reason,
    |app: TestApp| async move {
        let w = world(&app).await;
        let r = redeem(&app, "not-a-real-token").await;
        refused(&r, 404);

        // Issuing a second link cancels the first.
        let first = invite(&app, &w.mel, w.ann, None).await;
        let second = invite(&app, &w.mel, w.ann, None).await;
        assert_ne!(first, second);
        let says = refused(&redeem(&app, link_token(&first)).await, 403);
        assert!(says.contains("cancelled"), "{says}");

        // Past its date.
        {
            let past = cohort::util::now() - Duration::days(1);
            diesel::update(invitations::table.filter(invitations::patient_id.eq(w.ann)))
                .set(invitations::expires_at.eq(past))
                .execute(&mut *app.conn())
                .unwrap();
        }
        let says = refused(&redeem(&app, link_token(&second)).await, 410);
        assert!(says.contains("expired"), "{says}");
        // The cancelled one stays cancelled, whatever its date.
        refused(&redeem(&app, link_token(&first)).await, 403);

        // None of that made a code; a fresh link still works.
        let codes: i64 = oauth_grants::table
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(codes, 0);
        let third = invite(&app, &w.mel, w.ann, None).await;
        assert_eq!(redeem(&app, link_token(&third)).await.status, 200);
    }
);

// ---- the token endpoint ----------------------------------------------------------------------

on_both_backends!(
    the_code_is_exchanged_once_with_the_pkce_verifier_for_a_patient_token,
    |app: TestApp| async move {
        let w = world(&app).await;
        let link = invite(&app, &w.mel, w.ann, None).await;
        let token = link_token(&link);
        let r = redeem(&app, token).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let grant = r.body["grant"].clone();
        let code = grant["code"].as_str().unwrap();
        let redirect = app.at("/invite/connected");
        let good = verifier(token);

        // Wrong verifiers: another token's, the padded encoding, the token itself.
        let other = verifier("another-link-token");
        let padded = URL_SAFE.encode(token.as_bytes());
        assert_ne!(padded, good, "the token's length makes padding show");
        for v in [other.as_str(), padded.as_str(), token] {
            let r = trade(&app, code, v, "cohort", &redirect).await;
            oauth_error(&r, 400, "invalid_grant");
        }
        let r = trade(&app, code, &good, "cohort", "https://evil.example/cb").await;
        oauth_error(&r, 400, "invalid_grant");
        let r = trade(&app, code, &good, "no-such-app", &redirect).await;
        oauth_error(&r, 401, "invalid_client");

        // The right one.
        let r = trade(&app, code, &good, "cohort", &redirect).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.cache_control.as_deref(), Some("no-store"));
        assert_eq!(
            keys(&r.body),
            "access_token expires_in refresh_token scope token_type"
        );
        assert_eq!(r.body["token_type"], "Bearer");
        let expires_in = r.body["expires_in"].as_i64().unwrap_or_default();
        assert!(expires_in > 0, "{}", r.body);
        assert!(r.body["scope"].is_string(), "{}", r.body);
        let t = tokens(&r);
        assert_ne!(t.access, t.refresh);
        let me = get(&app, &t.access, "/api/v1/patients/me").await;
        assert_eq!((me.status, id_of(&me.body)), (200, w.ann), "{}", me.body);
        assert!(app.audit_actions().contains(&"app.connect".to_string()));

        // Each code works once.
        let r = trade(&app, code, &good, "cohort", &redirect).await;
        oauth_error(&r, 400, "invalid_grant");

        // redirect_uri may be left out; the path without its slash works too.
        let link = invite(&app, &w.mel, w.cy, None).await;
        let token = link_token(&link);
        let r = redeem(&app, token).await;
        let code = r.body["grant"]["code"].as_str().unwrap().to_string();
        let v = verifier(token);
        let pairs = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", "cohort"),
            ("code_verifier", v.as_str()),
        ];
        let res = script().post(app.at("/o/token")).form(&pairs).send().await;
        let t = tokens(&reply(res.unwrap()).await);
        let me = get(&app, &t.access, "/api/v1/patients/me").await;
        assert_eq!((me.status, id_of(&me.body)), (200, w.cy), "{}", me.body);
    }
);

on_both_backends!(
    malformed_token_requests_get_rfc_6749_errors,
    |app: TestApp| async move {
        let w = world(&app).await;
        let link = invite(&app, &w.mel, w.ann, None).await;
        let token = link_token(&link);
        let r = redeem(&app, token).await;
        let code = r.body["grant"]["code"].as_str().unwrap().to_string();
        let v = verifier(token);
        let cases: Vec<(Form, u16, &str)> = vec![
            (
                vec![("client_id", "cohort"), ("code", &code)],
                400,
                "invalid_request",
            ),
            (vec![], 400, "invalid_request"),
            (
                vec![
                    ("grant_type", "password"),
                    ("client_id", "cohort"),
                    ("username", "ann@x.org"),
                    ("password", "x"),
                ],
                400,
                "unsupported_grant_type",
            ),
            (
                vec![
                    ("grant_type", "authorization_code"),
                    ("client_id", "cohort"),
                    ("code_verifier", &v),
                ],
                400,
                "invalid_request",
            ),
            (
                vec![
                    ("grant_type", "authorization_code"),
                    ("client_id", "cohort"),
                    ("code", "no-such-code"),
                    ("code_verifier", &v),
                ],
                400,
                "invalid_grant",
            ),
            (
                vec![
                    ("grant_type", "refresh_token"),
                    ("client_id", "cohort"),
                    ("refresh_token", &code),
                ],
                400,
                "invalid_grant",
            ),
        ];
        for (form, status, error) in cases {
            let r = token_call(&app, &form).await;
            assert_eq!(r.status, status, "{form:?}: {}", r.body);
            oauth_error(&r, status, error);
        }

        // A code not exchanged in time is dead.
        {
            let past = cohort::util::now() - Duration::minutes(1);
            diesel::update(oauth_grants::table)
                .set(oauth_grants::expires_at.eq(past))
                .execute(&mut *app.conn())
                .unwrap();
        }
        let r = exchange(&app, &r.body["grant"], token, "cohort").await;
        oauth_error(&r, 400, "invalid_grant");
    }
);

on_both_backends!(
    a_refresh_token_gives_a_new_pair_once_and_retires_the_old_access_token,
    |app: TestApp| async move {
        let w = world(&app).await;
        let first = connect(&app, &w.mel, w.ann).await;
        let me = "/api/v1/patients/me";
        assert_eq!(get(&app, &first.access, me).await.status, 200);

        let r = refresh(&app, &first.refresh, "cohort").await;
        assert_eq!(r.cache_control.as_deref(), Some("no-store"));
        assert_eq!(r.body["token_type"], "Bearer", "{}", r.body);
        let second = tokens(&r);
        assert_ne!(second.access, first.access);
        assert_ne!(second.refresh, first.refresh);
        assert_eq!(get(&app, &second.access, me).await.status, 200);
        let old = get(&app, &first.access, me).await;
        assert_eq!(old.status, 401, "the renewed token stops: {}", old.body);
        assert!(app.audit_actions().contains(&"app.refresh".to_string()));

        // The old refresh token is spent; the new one works, once.
        oauth_error(
            &refresh(&app, &first.refresh, "cohort").await,
            400,
            "invalid_grant",
        );
        assert_eq!(get(&app, &second.access, me).await.status, 200, "still on");
        let third = tokens(&refresh(&app, &second.refresh, "cohort").await);
        assert_eq!(get(&app, &third.access, me).await.status, 200);
        assert_eq!(get(&app, &second.access, me).await.status, 401);
        oauth_error(
            &refresh(&app, &second.refresh, "cohort").await,
            400,
            "invalid_grant",
        );
        oauth_error(
            &refresh(&app, "made-up", "cohort").await,
            400,
            "invalid_grant",
        );
    }
);

on_both_backends!(
    racing_apps_each_link_code_and_refresh_token_is_used_once,
    |app: TestApp| async move {
        let w = world(&app).await;
        let link = invite(&app, &w.mel, w.ann, None).await;
        let token = link_token(&link);
        let (a, b, c, d) = tokio::join!(
            redeem(&app, token),
            redeem(&app, token),
            redeem(&app, token),
            redeem(&app, token)
        );
        let mut statuses = vec![a.status, b.status, c.status, d.status];
        statuses.sort();
        assert_eq!(statuses, [200, 409, 409, 409], "one app wins the link");
        let winner = [a, b, c, d].into_iter().find(|r| r.status == 200).unwrap();
        let grant = winner.body["grant"].clone();

        let (a, b, c) = tokio::join!(
            exchange(&app, &grant, token, "cohort"),
            exchange(&app, &grant, token, "cohort"),
            exchange(&app, &grant, token, "cohort")
        );
        let replies = [a, b, c];
        let won: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
        assert_eq!(won.len(), 1, "one exchange wins the code");
        for r in replies.iter().filter(|r| r.status != 200) {
            oauth_error(r, 400, "invalid_grant");
        }
        let t = tokens(won[0]);
        let (a, b, c) = tokio::join!(
            refresh(&app, &t.refresh, "cohort"),
            refresh(&app, &t.refresh, "cohort"),
            refresh(&app, &t.refresh, "cohort")
        );
        let replies = [a, b, c];
        let won: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
        assert_eq!(won.len(), 1, "one refresh wins");
        for r in replies.iter().filter(|r| r.status != 200) {
            oauth_error(r, 400, "invalid_grant");
        }
        let live: i64 = api_tokens::table
            .filter(api_tokens::kind.eq("patient"))
            .filter(api_tokens::revoked_at.is_null())
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(live, 1, "one live token for the one connection");
        let fresh = tokens(won[0]);
        let me = get(&app, &fresh.access, "/api/v1/patients/me").await;
        assert_eq!(me.status, 200, "{}", me.body);
    }
);

// ---- what a patient token reaches ------------------------------------------------------------

on_both_backends!(
    a_patient_token_reaches_its_own_record_and_nobody_elses,
    |app: TestApp| async move {
        let w = world(&app).await;
        let t = connect(&app, &w.mel, w.ann).await;
        let ann = t.access.as_str();

        let r = get(&app, ann, "/api/v1/patients/me").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            pick(&r.body, "id telecomEmail jheUserId"),
            json!([w.ann, "ann@x.org", w.ann_user])
        );
        let orgs = r.body["organizations"].as_array().unwrap();
        let org_ids: Vec<i64> = orgs.iter().map(id_of).collect();
        assert_eq!(org_ids, vec![w.north], "{}", r.body);
        let r = get(&app, ann, "/api/v1/users/profile").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["id"], w.ann_user);

        // Lists and other people: refused, or not there.
        let cases = [
            ("/api/v1/patients".to_string(), 403),
            ("/api/v1/organizations".to_string(), 403),
            ("/api/v1/studies".to_string(), 403),
            (format!("/api/v1/patients/{}", w.ann), 403),
            (format!("/api/v1/patients/{}", w.cy), 403),
            (format!("/api/v1/patients/{}/consents", w.cy), 404),
            (format!("/api/v1/patients/{}/consents", w.bob), 404),
            (format!("/FHIR/R5/Group/{}", w.study), 403),
        ];
        for (path, status) in cases {
            let r = get(&app, ann, &path).await;
            assert_eq!(r.status, status, "{path}: {}", r.body);
        }
        let r = get(&app, ann, &format!("/FHIR/R5/Patient/{}", w.ann)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            pick(&r.body, "resourceType id"),
            json!(["Patient", w.ann.to_string()])
        );
        for other in [w.cy, w.bob] {
            let r = get(&app, ann, &format!("/FHIR/R5/Patient/{other}")).await;
            assert!(
                [403, 404].contains(&r.status),
                "Patient/{other}: {} {}",
                r.status,
                r.body
            );
        }
        // A patient does not invite anyone, itself included.
        let body = json!({"patient_id": w.ann});
        let r = send(&app, Some(ann), "POST", "/api/v1/invitation", Some(body)).await;
        assert_eq!(r.status, 403, "{}", r.body);

        // /patients/me is for patients: a practitioner names patients by id.
        for path in ["", "/consents", "/update_requests"] {
            let r = get(&app, &w.mel, &format!("/api/v1/patients/me{path}")).await;
            refused(&r, 404);
        }
    }
);

on_both_backends!(
    a_patient_reads_its_consents_as_its_practitioner_sees_them,
    |app: TestApp| async move {
        let w = world(&app).await;
        consent_for(&app, &w.mel, w.ann, w.study, &[(HEART_CODE, true)]).await;
        let t = connect(&app, &w.mel, w.ann).await;
        let theirs = get(
            &app,
            &w.mel,
            &format!("/api/v1/patients/{}/consents", w.ann),
        )
        .await;
        assert_eq!(theirs.status, 200, "{}", theirs.body);
        let me = get(&app, &t.access, "/api/v1/patients/me/consents").await;
        assert_eq!(me.status, 200, "{}", me.body);
        let by_id = get(
            &app,
            &t.access,
            &format!("/api/v1/patients/{}/consents", w.ann),
        )
        .await;
        assert_eq!(by_id.status, 200, "{}", by_id.body);
        assert_eq!(me.body, by_id.body);

        assert_eq!(keys(&me.body), keys(&theirs.body));
        let parts = "consolidatedConsentedScopes studiesPendingConsent studies";
        assert_eq!(pick(&me.body, parts), pick(&theirs.body, parts));
        assert_eq!(me.body["patient"]["id"], w.ann);
        assert_eq!(keys(&me.body["patient"]), keys(&theirs.body["patient"]));
        // What it says: heart rate given, blood pressure still to answer, in Heart study.
        let decided = &me.body["studies"][0];
        assert_eq!(id_of(decided), w.study, "{}", me.body);
        let cell = &decided["scopeConsents"][0];
        assert_eq!(
            (&cell["code"]["codingCode"], &cell["consented"]),
            (&json!(HEART_CODE), &json!(true))
        );
        let pending = &me.body["studiesPendingConsent"][0]["pendingScopeConsents"][0];
        assert_eq!(pending["code"]["codingCode"], BP_CODE, "{}", me.body);
        let consolidated = &me.body["consolidatedConsentedScopes"];
        assert_eq!(
            consolidated.as_array().map(Vec::len),
            Some(1),
            "{consolidated}"
        );
    }
);

on_both_backends!(
    a_patient_records_its_own_consent_as_the_actor_without_a_reason,
    |app: TestApp| async move {
        let w = world(&app).await;
        let t = connect(&app, &w.mel, w.ann).await;
        let ann = t.access.as_str();
        let r = decide(&app, ann, "me", w.study, &[(HEART_CODE, true)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let cell = &r.body["studies"][0]["scopeConsents"][0];
        assert_eq!(pick(cell, "consented"), json!([true]), "{}", r.body);
        let row = stored_consent(&app, w.study, w.ann, HEART);
        assert_eq!(
            row,
            Some((true, Some(w.ann_user), None)),
            "the patient is the actor"
        );
        let audit: Vec<(Option<i64>, Option<String>)> = audit_events::table
            .filter(audit_events::action.eq("consent.patient"))
            .select((audit_events::actor_user_id, audit_events::object_id))
            .load(&mut *app.conn())
            .unwrap();
        assert_eq!(audit, vec![(Some(w.ann_user), Some(w.ann.to_string()))]);

        // By its id too; a no is kept as a no.
        let own = w.ann.to_string();
        let r = decide(&app, ann, &own, w.study, &[(BP_CODE, false)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let row = stored_consent(&app, w.study, w.ann, BP);
        assert_eq!(row, Some((false, Some(w.ann_user), None)));
        let seen = get(
            &app,
            &w.mel,
            &format!("/api/v1/patients/{}/consents", w.ann),
        )
        .await;
        let cells = seen.body["studies"][0]["scopeConsents"]
            .as_array()
            .unwrap()
            .clone();
        let mut answers: Vec<(String, bool)> = cells
            .iter()
            .map(|c| {
                (
                    c["code"]["codingCode"].as_str().unwrap().to_string(),
                    c["consented"].as_bool().unwrap(),
                )
            })
            .collect();
        answers.sort();
        let expected = vec![(BP_CODE.to_string(), false), (HEART_CODE.to_string(), true)];
        assert_eq!(answers, expected, "the team sees the patient's answers");

        // Not enrolled there: refused, and a request mixing good and bad changes nothing.
        let r = decide(&app, ann, "me", w.south_study, &[(HEART_CODE, true)]).await;
        refused(&r, 400);
        let (mel, device, north) = (&w.mel, w.device, w.north);
        let other = study(&app, mel, north, "Sleep study", &[HEART], device, &[w.cy]).await;
        let r = decide(&app, ann, "me", other, &[(HEART_CODE, true)]).await;
        refused(&r, 400);
        let body = json!({"studyScopeConsents": [
            {"studyId": w.study, "scopeConsents": items(&[(HEART_CODE, false)])},
            {"studyId": other, "scopeConsents": items(&[(HEART_CODE, true)])}]});
        let r = send(
            &app,
            Some(ann),
            "PATCH",
            "/api/v1/patients/me/consents",
            Some(body),
        )
        .await;
        refused(&r, 400);
        assert_eq!(
            stored_consent(&app, w.study, w.ann, HEART).map(|c| c.0),
            Some(true)
        );
        assert_eq!(stored_consent(&app, other, w.ann, HEART), None);
        // A scope the study does not ask for.
        let bp_only = study(&app, mel, north, "BP only", &[BP], device, &[w.ann]).await;
        let r = decide(&app, ann, "me", bp_only, &[(HEART_CODE, true)]).await;
        refused(&r, 400);
        assert_eq!(stored_consent(&app, bp_only, w.ann, HEART), None);
        // Nor someone else's consent.
        let r = decide(&app, ann, &w.cy.to_string(), w.study, &[(HEART_CODE, true)]).await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert_eq!(stored_consent(&app, w.study, w.cy, HEART), None);
    }
);

// ---- observations ----------------------------------------------------------------------------

on_both_backends!(
    a_patient_uploads_only_its_own_consented_data_and_sees_only_its_own,
    |app: TestApp| async move {
        let w = world(&app).await;
        let t = connect(&app, &w.mel, w.ann).await;
        let ann = t.access.as_str();
        let r = decide(&app, ann, "me", w.study, &[(HEART_CODE, true)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        // Cy shares both, and the team has uploaded some of Cy's readings.
        consent_for(
            &app,
            &w.mel,
            w.cy,
            w.study,
            &[(HEART_CODE, true), (BP_CODE, true)],
        )
        .await;
        let (cy_bp, _) = obs(w.cy, w.device, BP_KIND, 1);
        let cy_first = upload(&app, &w.mel, &cy_bp).await;
        let (cy_hr, _) = obs(w.cy, w.device, HEART_KIND, 2);
        let cy_second = upload(&app, &w.mel, &cy_hr).await;

        let (mine, _) = obs(w.ann, w.device, HEART_KIND, 3);
        let own = upload(&app, ann, &mine).await;
        // For someone else, even consented and in the same study: refused.
        let (theirs, _) = obs(w.cy, w.device, HEART_KIND, 4);
        let r = send(&app, Some(ann), "POST", OBS, Some(theirs)).await;
        assert_eq!(r.status, 403, "{}", r.body);
        // A type the patient has not consented to share.
        let (bp, _) = obs(w.ann, w.device, BP_KIND, 5);
        let r = send(&app, Some(ann), "POST", OBS, Some(bp)).await;
        assert_eq!(r.status, 403, "{}", r.body);

        // Searches find only the patient's own.
        assert_eq!(found(&app, ann, "").await, vec![own]);
        assert_eq!(
            found(&app, ann, &format!("patient={}", w.ann)).await,
            vec![own]
        );
        assert_eq!(
            found(&app, ann, &format!("code={HEART_CODE}")).await,
            vec![own]
        );
        let r = get(&app, ann, &format!("{OBS}?patient={}", w.cy)).await;
        assert_ne!(r.status, 200, "{}", r.body);
        for id in [cy_first, cy_second] {
            let r = get(&app, ann, &format!("{OBS}/{id}")).await;
            assert_eq!(r.status, 404, "{}", r.body);
        }
        let r = get(&app, ann, &format!("{OBS}/{own}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = get(&app, ann, "/api/v1/observations").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["count"], 1, "{}", r.body);
        assert_eq!(r.body["results"][0]["subjectPatientId"], w.ann);
        let r = get(
            &app,
            ann,
            &format!("/api/v1/observations?patient_id={}", w.cy),
        )
        .await;
        assert_ne!(r.status, 200, "{}", r.body);

        // In a batch, the foreign entry is refused and the own one kept.
        let (again, _) = obs(w.ann, w.device, HEART_KIND, 6);
        let (foreign, _) = obs(w.cy, w.device, HEART_KIND, 8);
        let entry =
            |r: Value| json!({"resource": r, "request": {"method": "POST", "url": "Observation"}});
        let bundle = json!({"resourceType": "Bundle", "type": "batch",
                            "entry": [entry(foreign), entry(again)]});
        let r = send(&app, Some(ann), "POST", "/FHIR/R5", Some(bundle)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let status = |i: usize| r.body["entry"][i]["response"]["status"].clone();
        assert_eq!(
            (status(0), status(1)),
            (json!("403 Forbidden"), json!("201 Created"))
        );
        assert_eq!(found(&app, ann, "").await.len(), 2);
        assert_eq!(
            found(&app, &w.mel, &format!("patient={}", w.cy))
                .await
                .len(),
            2
        );
        // The team sees all four.
        let all = found(&app, &w.mel, "").await;
        assert_eq!(all.len(), 4, "{all:?}");
        assert!([cy_first, cy_second, own].iter().all(|id| all.contains(id)));
    }
);

on_both_backends!(
    revoking_consent_stops_the_next_upload_and_keeps_what_was_sent,
    |app: TestApp| async move {
        let w = world(&app).await;
        let t = connect(&app, &w.mel, w.ann).await;
        let ann = t.access.as_str();
        let r = decide(&app, ann, "me", w.study, &[(HEART_CODE, true)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let (first, _) = obs(w.ann, w.device, HEART_KIND, 1);
        let kept = upload(&app, ann, &first).await;

        let r = decide(&app, ann, "me", w.study, &[(HEART_CODE, false)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let (next, _) = obs(w.ann, w.device, HEART_KIND, 2);
        let r = send(&app, Some(ann), "POST", OBS, Some(next.clone())).await;
        assert_eq!(r.status, 403, "the very next upload: {}", r.body);
        // Not even the team may upload it for the patient now.
        let r = send(&app, Some(&w.mel), "POST", OBS, Some(next)).await;
        assert_eq!(r.status, 403, "{}", r.body);

        let r = get(&app, ann, &format!("{OBS}/{kept}")).await;
        assert_eq!((r.status, id_of(&r.body)), (200, kept), "{}", r.body);
        let r = get(&app, &w.mel, &format!("{OBS}/{kept}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(found(&app, ann, "").await, vec![kept]);
    }
);

// ---- data-update requests --------------------------------------------------------------------

on_both_backends!(
    an_update_request_needs_the_patient_until_its_app_is_connected_and_it_consented,
    |app: TestApp| async move {
        let w = world(&app).await;
        let (mel, study) = (w.mel.as_str(), w.study);
        // No app, no consent.
        assert_eq!(ask_update(&app, mel, study, w.ann).await, ACTION);
        // Consent recorded by the team, but no app.
        consent_for(&app, mel, w.ann, study, &[(HEART_CODE, true)]).await;
        assert_eq!(ask_update(&app, mel, study, w.ann).await, ACTION);
        // The invitation redeemed but its code not exchanged: no app yet.
        let link = invite(&app, mel, w.ann, None).await;
        let token = link_token(&link);
        let r = redeem(&app, token).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(ask_update(&app, mel, study, w.ann).await, ACTION);
        // Both.
        tokens(&exchange(&app, &r.body["grant"], token, "cohort").await);
        assert_eq!(ask_update(&app, mel, study, w.ann).await, NO_ACTION);

        // Cy connects but has said nothing, then says no: the patient must still act.
        let cy = connect(&app, mel, w.cy).await;
        assert_eq!(ask_update(&app, mel, study, w.cy).await, ACTION);
        let r = decide(&app, &cy.access, "me", study, &[(HEART_CODE, false)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(ask_update(&app, mel, study, w.cy).await, ACTION);
        // A yes in another study counts only there.
        let sleep = study_with(&app, &w, "Sleep study", &[w.cy]).await;
        let r = decide(&app, &cy.access, "me", sleep, &[(BP_CODE, true)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(ask_update(&app, mel, study, w.cy).await, ACTION);
        assert_eq!(ask_update(&app, mel, sleep, w.cy).await, NO_ACTION);

        // An app whose token and refresh token have both run out is no app.
        {
            use cohort::db::schema::patients;
            let past = cohort::util::now() - Duration::days(1);
            let mut c = app.conn();
            let user: i64 = patients::table
                .find(w.cy)
                .select(patients::user_id)
                .first(&mut *c)
                .unwrap();
            diesel::update(api_tokens::table.filter(api_tokens::user_id.eq(user)))
                .set(api_tokens::expires_at.eq(Some(past)))
                .execute(&mut *c)
                .unwrap();
            diesel::update(oauth_grants::table.filter(oauth_grants::user_id.eq(user)))
                .set(oauth_grants::expires_at.eq(past))
                .execute(&mut *c)
                .unwrap();
        }
        assert_eq!(ask_update(&app, mel, sleep, w.cy).await, ACTION);

        let outcomes: Vec<String> = update_requests::table
            .select(update_requests::outcome)
            .order(update_requests::id)
            .load(&mut *app.conn())
            .unwrap();
        let expected = [
            ACTION, ACTION, ACTION, NO_ACTION, ACTION, ACTION, ACTION, NO_ACTION, ACTION,
        ];
        assert_eq!(outcomes, expected, "each answer is kept");
        let asked = app.audit_actions();
        let asked = asked
            .iter()
            .filter(|a| *a == "update_request.create")
            .count();
        assert_eq!(asked, 9);
    }
);

/// Another North study asking for blood pressure, with `patients` enrolled.
async fn study_with(app: &TestApp, w: &World, name: &str, patients: &[i64]) -> i64 {
    study(app, &w.mel, w.north, name, &[BP], w.device, patients).await
}

on_both_backends!(
    update_requests_are_refused_for_missing_foreign_unenrolled_or_paused,
    |app: TestApp| async move {
        let w = world(&app).await;
        let mel = w.mel.as_str();
        let cases = [
            (update_path(999_999, w.ann), 404),
            (update_path(w.study, 999_999), 404),
            (update_path(w.south_study, w.ann), 404),
            (update_path(w.south_study, w.bob), 404),
            (update_path(w.study, w.bob), 404),
        ];
        for (path, status) in cases {
            let r = send(&app, Some(mel), "POST", &path, Some(json!({}))).await;
            refused(&r, status);
        }
        let empty = study_with(&app, &w, "Empty study", &[]).await;
        let r = send(
            &app,
            Some(mel),
            "POST",
            &update_path(empty, w.ann),
            Some(json!({})),
        )
        .await;
        refused(&r, 400);

        let path = format!("/api/v1/studies/{}", w.study);
        let out = expect(&app, mel, "PATCH", &path, json!({"status": "paused"}), 200).await;
        assert_eq!(out["status"], "paused");
        let r = send(
            &app,
            Some(mel),
            "POST",
            &update_path(w.study, w.ann),
            Some(json!({})),
        )
        .await;
        refused(&r, 409);

        // The South team may ask its own patient; a patient's token may not ask at all.
        let south = ask_update(&app, &w.oz, w.south_study, w.bob).await;
        assert_eq!(south, ACTION);
        let bob = connect(&app, &w.oz, w.bob).await;
        let path = update_path(w.south_study, w.bob);
        let r = send(&app, Some(&bob.access), "POST", &path, Some(json!({}))).await;
        assert_eq!(r.status, 403, "{}", r.body);
        let stored: i64 = update_requests::table
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(stored, 1, "only the South team's request was kept");
    }
);

on_both_backends!(
    the_app_lists_its_update_requests_and_they_are_marked_seen,
    |app: TestApp| async move {
        let w = world(&app).await;
        let mel = w.mel.as_str();
        let ann = connect(&app, mel, w.ann).await;
        let r = decide(&app, &ann.access, "me", w.study, &[(HEART_CODE, true)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let sleep = study_with(&app, &w, "Sleep study", &[w.ann, w.cy]).await;
        let list = "/api/v1/patients/me/update_requests";
        let r = get(&app, &ann.access, list).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body,
            json!({"count": 0, "next": null, "previous": null, "results": []})
        );

        let before = Utc::now() - Duration::seconds(2);
        ask_update(&app, mel, w.study, w.ann).await;
        ask_update(&app, mel, sleep, w.ann).await;
        ask_update(&app, mel, sleep, w.cy).await; // not Ann's

        let r = get(&app, &ann.access, list).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(pick(&r.body, "count next previous"), json!([2, null, null]));
        let rows = r.body["results"].as_array().unwrap().clone();
        assert_eq!(rows.len(), 2);
        let by_study = |rows: &[Value], s: i64| -> Value {
            let row = rows.iter().find(|x| x["studyId"] == s);
            row.unwrap_or_else(|| panic!("no request for study {s}"))
                .clone()
        };
        for row in &rows {
            assert_eq!(keys(row), "id requestedAt scopes seenAt studyId studyName");
            assert_eq!(
                row["seenAt"],
                Value::Null,
                "not seen before this read: {row}"
            );
            let at = row["requestedAt"].as_str().unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc);
            assert!(at >= before && at <= Utc::now(), "{row}");
        }
        let heart = by_study(&rows, w.study);
        assert_eq!(
            pick(&heart, "studyName scopes"),
            json!(["Heart study", [HEART_CODE]])
        );
        let slept = by_study(&rows, sleep);
        assert_eq!(pick(&slept, "studyName scopes"), json!(["Sleep study", []]));

        // The next read shows when the app first saw them.
        let r = get(&app, &ann.access, list).await;
        let again = r.body["results"].as_array().unwrap().clone();
        assert_eq!(again.len(), 2);
        for s in [w.study, sleep] {
            let (old, new) = (by_study(&rows, s), by_study(&again, s));
            assert!(new["seenAt"].is_string(), "{new}");
            assert_eq!(pick(&new, "id requestedAt"), pick(&old, "id requestedAt"));
        }
        // A new request is unseen again, the old ones keep their time.
        let seen_first = by_study(&again, sleep)["seenAt"].clone();
        ask_update(&app, mel, sleep, w.ann).await;
        let r = get(&app, &ann.access, list).await;
        assert_eq!(r.body["count"], 3, "{}", r.body);
        let rows = r.body["results"].as_array().unwrap();
        let unseen: Vec<&Value> = rows.iter().filter(|x| x["seenAt"].is_null()).collect();
        assert_eq!(unseen.len(), 1, "{}", r.body);
        let old = rows.iter().find(|x| x["id"] == slept["id"]).unwrap();
        assert_eq!(old["seenAt"], seen_first);

        // Only a patient has a list of its own.
        refused(&get(&app, mel, list).await, 404);
    }
);

// ---- registered apps -------------------------------------------------------------------------

on_both_backends!(
    a_registered_app_gets_links_and_codes_of_its_own,
    |app: TestApp| async move {
        let w = world(&app).await;
        diesel::insert_into(clients::table)
            .values((
                clients::name.eq("Pulse"),
                clients::client_id.eq("pulse-app"),
                clients::redirect_uri.eq("https://pulse.example/callback"),
                clients::invitation_url_template.eq("https://pulse.example/join?code=CODE"),
                clients::created_at.eq(cohort::util::now()),
            ))
            .execute(&mut *app.conn())
            .unwrap();
        let link = invite(&app, &w.mel, w.ann, Some("pulse-app")).await;
        let prefix = "https://pulse.example/join?code=";
        assert!(link.starts_with(prefix), "{link}");
        let token = &link[prefix.len()..];
        assert!(token.len() >= 20 && !token.contains("CODE"), "{link}");

        let r = redeem(&app, token).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let grant = r.body["grant"].clone();
        let expected = json!(["pulse-app", "https://pulse.example/callback"]);
        assert_eq!(pick(&grant, "client_id redirect_uri"), expected);
        // Cohort's client may not use another app's code; the app itself may.
        oauth_error(
            &exchange(&app, &grant, token, "cohort").await,
            400,
            "invalid_grant",
        );
        let t = tokens(&exchange(&app, &grant, token, "pulse-app").await);
        let me = get(&app, &t.access, "/api/v1/patients/me").await;
        assert_eq!((me.status, id_of(&me.body)), (200, w.ann));
        // Its refresh token is its own too.
        oauth_error(
            &refresh(&app, &t.refresh, "cohort").await,
            400,
            "invalid_grant",
        );
        tokens(&refresh(&app, &t.refresh, "pulse-app").await);

        // A Cohort link's code is not the app's.
        let link = invite(&app, &w.mel, w.cy, None).await;
        let token = link_token(&link);
        let grant = redeem(&app, token).await.body["grant"].clone();
        assert_eq!(grant["client_id"], "cohort");
        oauth_error(
            &exchange(&app, &grant, token, "pulse-app").await,
            400,
            "invalid_grant",
        );

        // An app nobody registered.
        let body = json!({"patient_id": w.ann, "client_id": "no-such-app"});
        let r = send(&app, Some(&w.mel), "POST", "/api/v1/invitation", Some(body)).await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
);

// ---- the whole way ---------------------------------------------------------------------------

on_both_backends!(
    an_invited_patient_connects_consents_and_uploads_and_the_team_sees_the_reading,
    |app: TestApp| async move {
        let w = world(&app).await;
        let link = invite(&app, &w.mel, w.ann, None).await;
        let token = link_token(&link);
        let r = redeem(&app, token).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let t = tokens(&exchange(&app, &r.body["grant"], token, "cohort").await);
        let ann = t.access.as_str();

        // Before consent the app may not upload.
        let (reading, point) = obs(w.ann, w.device, HEART_KIND, 7);
        let r = send(&app, Some(ann), "POST", OBS, Some(reading.clone())).await;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = decide(&app, ann, "me", w.study, &[(HEART_CODE, true)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let id = upload(&app, ann, &reading).await;

        let path = format!("/api/v1/observations?patient_id={}", w.ann);
        let r = get(&app, &w.mel, &path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["count"], 1, "{}", r.body);
        let row = &r.body["results"][0];
        assert_eq!(
            pick(row, "id subjectPatientId codingCode"),
            json!([id, w.ann, HEART_CODE])
        );
        assert_eq!(row["omhData"], point, "the reading as the app sent it");
        let group = format!("patient._has:Group:member:_id={}", w.study);
        assert_eq!(found(&app, &w.mel, &group).await, vec![id]);
        assert_eq!(
            found(&app, &w.mel, &format!("patient={}", w.ann)).await,
            vec![id]
        );
        // South's team sees nothing of it.
        assert_eq!(found(&app, &w.oz, "").await, Vec::<i64>::new());
    }
);
