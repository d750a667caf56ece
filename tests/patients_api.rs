//! /api/v1/patients as a script sees it: the JHE shape, validation messages, conflicts, the role
//! matrix, paging, filters, keyword search, global lookup, update, removal, adding to another
//! organization, and the audit trail.

mod common;

use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{
    patient_organizations as po, patient_search_terms as pst, patients as p, users as u,
};

// ---- helpers ---------------------------------------------------------------------------------

const LIST: &str = "/api/v1/patients";

/// A script with a personal API token.
struct Api<'a> {
    app: &'a TestApp,
    token: String,
}

fn api(app: &TestApp, user_id: i64) -> Api<'_> {
    Api {
        app,
        token: app.token(user_id),
    }
}

impl Api<'_> {
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, Value::Null).await
    }

    async fn post(&self, body: Value) -> (u16, Value) {
        self.send("POST", LIST, body).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PATCH", path, body).await
    }

    async fn delete(&self, path: &str) -> u16 {
        self.send("DELETE", path, Value::Null).await.0
    }

    /// A JSON call; a null body sends none, and an empty answer reads as null.
    async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            self.app.at(path)
        };
        let mut req = script().request(method, url).bearer_auth(&self.token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        if text.is_empty() {
            return (status, Value::Null);
        }
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, value)
    }

    /// Creates a patient and returns its id, failing loudly if the server refuses.
    async fn create(&self, body: Value) -> i64 {
        let (status, out) = self.post(body).await;
        assert_eq!(status, 201, "create: {out}");
        out["id"].as_i64().unwrap()
    }

    async fn add(&self, org: i64, email: &str, family: &str, given: &str, birth: &str) -> i64 {
        self.create(patient(org, email, family, given, birth)).await
    }

    /// The ids on one page of a list, which must answer 200.
    async fn ids(&self, path: &str) -> Vec<i64> {
        let (status, out) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {out}");
        ids(&out)
    }
}

/// A create body with the usual fields.
fn patient(org: i64, email: &str, family: &str, given: &str, birth: &str) -> Value {
    json!({"organizationId": org, "telecomEmail": email, "nameFamily": family,
           "nameGiven": given, "birthDate": birth})
}

fn with_ids(mut body: Value, idents: &[(&str, &str)]) -> Value {
    let one = |(s, v): &(&str, &str)| json!({"system": s, "value": v});
    body["identifiers"] = json!(idents.iter().map(one).collect::<Vec<_>>());
    body
}

fn one(id: i64) -> String {
    format!("{LIST}/{id}")
}

fn in_org(id: i64, org: i64) -> String {
    format!("{LIST}/{id}?organizationId={org}")
}

fn of_org(org: i64) -> String {
    format!("{LIST}?organization_id={org}")
}

fn ids(envelope: &Value) -> Vec<i64> {
    let results = envelope["results"].as_array();
    let results = results.unwrap_or_else(|| panic!("no results in {envelope}"));
    results.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

/// A string field of a JSON object ("" when absent or not a string).
fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Several string fields at once, named in one string: `fields(&v, "nameFamily nameGiven")`.
fn fields<'a>(v: &'a Value, keys: &str) -> Vec<&'a str> {
    keys.split_whitespace().map(|k| s(v, k)).collect()
}

/// (count, ids) of a list envelope.
fn listed(envelope: &Value) -> (usize, Vec<i64>) {
    (envelope["count"].as_u64().unwrap() as usize, ids(envelope))
}

/// The messages of a validation 400 for one field: `{"field": ["msg", ...]}`.
fn messages(body: &Value, field: &str) -> String {
    let list = body[field].as_array();
    let list = list.unwrap_or_else(|| panic!("no message list for {field} in {body}"));
    assert!(!list.is_empty(), "an empty message list for {field}");
    let all: Vec<&str> = list.iter().map(|m| m.as_str().unwrap()).collect();
    all.join(" ")
}

fn patient_count(app: &TestApp) -> i64 {
    p::table.count().get_result(&mut *app.conn()).unwrap()
}

/// The organizations a patient JSON lists, by id, sorted.
fn org_ids(patient: &Value) -> Vec<i64> {
    let orgs = patient["organizations"].as_array().unwrap();
    let mut ids: Vec<i64> = orgs.iter().map(|o| o["id"].as_i64().unwrap()).collect();
    ids.sort();
    ids
}

/// "system|value" of each identifier of a patient JSON.
fn pairs(patient: &Value) -> Vec<String> {
    let list = patient["identifiers"].as_array().unwrap();
    let pair = |i: &Value| fields(i, "system value").join("|");
    list.iter().map(pair).collect()
}

// ---- create ----------------------------------------------------------------------------------

on_both_backends!(
    a_member_creates_a_patient_and_gets_the_jhe_shape_back_normalised,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let mut body = patient(north, " John.Smith@Example.ORG ", "Smith", "John", "");
        body["birthDate"] = json!("1980-01-01");
        body["telecomPhone"] = json!("+1 (617) 555-0100");
        let (status, out) = mel.post(with_ids(body, &[("urn:mrn", "MRN-00123")])).await;
        assert_eq!(status, 201, "{out}");
        let keys = out.as_object().unwrap().keys();
        let mut keys: Vec<&str> = keys.map(String::as_str).collect();
        keys.sort();
        let expected = "birthDate id identifiers jheUserId nameFamily nameGiven organizations \
                        telecomEmail telecomPhone";
        assert_eq!(keys.join(" "), expected, "exactly the JHE keys, camelCase");
        let id = out["id"].as_i64().expect("an integer id");
        let user_id = out["jheUserId"].as_i64().expect("an integer jheUserId");
        assert_eq!(s(&out, "telecomEmail"), "john.smith@example.org");
        assert_eq!(s(&out, "telecomPhone"), "+16175550100");
        let names = fields(&out, "nameFamily nameGiven birthDate");
        assert_eq!(names, ["Smith", "John", "1980-01-01"]);
        assert_eq!(pairs(&out), ["urn:mrn|MRN-00123"]);
        assert!(out["identifiers"][0]["id"].is_i64(), "with its id");
        let org = &out["organizations"][0];
        assert_eq!((org["id"].as_i64(), s(org, "name")), (Some(north), "North"));
        assert_eq!(fields(org, "type currentUserRole"), ["team", "member"]);

        // The stored record reads back the same, e-mail lower-case.
        let (status, read) = mel.get(&one(id)).await;
        assert_eq!((status, &read), (200, &out));
        let q = p::table.find(id).select((p::telecom_email, p::user_id));
        let stored: (String, i64) = q.first(&mut *app.conn()).unwrap();
        assert_eq!(stored, ("john.smith@example.org".to_string(), user_id));

        // snake_case keys work too, and the optional fields may be left out.
        let snake = json!({"organization_id": north.to_string(), "telecom_email": "ana@x.org",
                           "name_family": "Silva", "name_given": "Ana",
                           "birth_date": "1990-12-31", "telecom_phone": "617.555.0199"});
        let (status, out) = mel.post(snake).await;
        assert_eq!(status, 201, "{out}");
        let got = fields(&out, "nameFamily birthDate telecomPhone");
        assert_eq!(got, ["Silva", "1990-12-31", "6175550199"]);
        assert_eq!(out["identifiers"], json!([]));
    }
);

on_both_backends!(
    each_bad_field_is_refused_with_a_message_under_its_name,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let good = || {
            let mut b = patient(north, "ok@x.org", "Smith", "John", "1980-01-01");
            b["telecomPhone"] = json!("+1 617 555 0100");
            b
        };
        let future = chrono::Utc::now().date_naive() + chrono::Days::new(2);
        let both = "both a system and a value";
        let cases: Vec<(&str, Value, &str)> = vec![
            ("telecomEmail", json!("not-an-email"), "name@example.org"),
            ("telecomEmail", json!(""), "e-mail"),
            ("nameFamily", json!(""), "family name"),
            ("nameGiven", json!("  "), "given name"),
            ("birthDate", json!("01/02/1980"), "YYYY-MM-DD"),
            ("birthDate", json!("1980-02-30"), "YYYY-MM-DD"),
            ("birthDate", json!(future.to_string()), "future"),
            ("telecomPhone", json!("call me maybe"), "digits"),
            ("telecomPhone", json!("12"), "digits"),
            ("identifiers", json!([{"system": "urn:mrn"}]), both),
            ("identifiers", json!([{"system": "x", "value": ""}]), both),
            ("identifiers", json!([{"value": "123"}]), both),
            ("identifiers", json!("urn:mrn|123"), "list"),
        ];
        for (field, value, says) in cases {
            let mut body = good();
            body[field] = value.clone();
            let (status, out) = mel.post(body).await;
            assert_eq!(status, 400, "{field}={value}: {out}");
            let msg = messages(&out, field);
            assert!(msg.contains(says), "{field}: {msg:?} lacks {says:?}");
        }
        // Both names missing: a message for each.
        let nameless = json!({"organizationId": north, "telecomEmail": "x@x.org"});
        let (status, out) = mel.post(nameless).await;
        assert_eq!(status, 400);
        messages(&out, "nameFamily");
        messages(&out, "nameGiven");

        let mut body = good();
        body.as_object_mut().unwrap().remove("organizationId");
        let (status, out) = mel.post(body).await;
        assert_eq!(status, 400, "{out}");
        assert!(messages(&out, "organizationId").contains("organization"));
        assert_eq!(patient_count(&app), 0, "nothing was stored");
        mel.create(good()).await; // and the good body itself is fine
    }
);

on_both_backends!(
    a_taken_email_or_identifier_is_refused_and_the_message_says_what_to_do,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let south = app.org("South", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let first = patient(north, "john@x.org", "Smith", "John", "1980-01-01");
        mel.create(with_ids(first, &[("urn:mrn", "A1")])).await;

        let again = patient(north, "JOHN@x.org", "Smith", "Johnny", "1980-01-01");
        let (status, out) = mel.post(again).await;
        assert_eq!(status, 409, "{out}");
        assert!(s(&out, "detail").contains("already a patient of this organization"));

        let elsewhere = patient(south, "john@x.org", "S", "J", "1980-01-01");
        let (status, out) = mel.post(elsewhere).await;
        assert_eq!(status, 409, "{out}");
        let d = s(&out, "detail");
        assert!(d.contains("another organization"), "{d}");
        assert!(d.contains("add them"), "{d}");

        let olga = patient(south, "olga@x.org", "Other", "Olga", "1970-01-01");
        let (status, out) = mel.post(with_ids(olga.clone(), &[("urn:mrn", "A1")])).await;
        assert_eq!(status, 400, "{out}");
        assert!(messages(&out, "identifiers").contains("A1"));
        // The same value under another system is another identifier.
        mel.create(with_ids(olga, &[("urn:insurance", "A1")])).await;

        let staff = patient(north, "MEL@x.org", "Mel", "Staff", "1970-01-01");
        let (status, out) = mel.post(staff).await;
        assert_eq!(status, 400, "{out}");
        assert!(messages(&out, "telecomEmail").contains("practitioner"));
        assert_eq!(patient_count(&app), 2);
    }
);

// ---- who may do what -------------------------------------------------------------------------

on_both_backends!(
    managers_and_members_write_viewers_only_read_outsiders_see_nothing_and_superusers_see_all,
    |app: TestApp| async move {
        let (mia_u, mia) = app.practitioner("mia@x.org", false);
        let (mel_u, mel) = app.practitioner("mel@x.org", false);
        let (val_u, val) = app.practitioner("val@x.org", false);
        let (oz_u, oz) = app.practitioner("oz@x.org", false);
        let (su_u, _) = app.practitioner("su@x.org", true);
        let roles = [(mia, "manager"), (mel, "member"), (val, "viewer")];
        let north = app.org("North", 0, &roles);
        let south = app.org("South", 0, &[(oz, "member")]);
        let (mia, mel, val) = (api(&app, mia_u), api(&app, mel_u), api(&app, val_u));
        let (oz, su) = (api(&app, oz_u), api(&app, su_u));

        let amy = mia.add(north, "a@x.org", "Adams", "Al", "1980-01-01").await;
        let bo = mel.add(north, "b@x.org", "Brown", "Bo", "1981-01-01").await;
        let cy = oz.add(south, "c@x.org", "Cole", "Cy", "1982-01-01").await;
        let (status, out) = val.post(patient(north, "v@x.org", "V", "V", "")).await;
        assert_eq!(status, 403, "{out}");
        assert!(s(&out, "detail").contains("role"), "says why: {out}");
        let (status, out) = oz.post(patient(north, "o@x.org", "O", "O", "")).await;
        assert_eq!(status, 404, "North does not exist for an outsider: {out}");

        // Reads.
        for who in [&mia, &mel, &val, &su] {
            assert_eq!(who.get(&one(amy)).await.0, 200);
            let listed = who.ids(LIST).await;
            assert!(listed.contains(&amy) && listed.contains(&bo), "{listed:?}");
        }
        let (status, out) = oz.get(&one(amy)).await;
        assert_eq!(status, 404, "an outsider is told nothing: {out}");
        assert_eq!(oz.ids(LIST).await, vec![cy]);
        assert_eq!(oz.get(&of_org(north)).await.0, 404);
        assert_eq!(su.ids(LIST).await, vec![amy, bo, cy], "superuser: all");
        assert_eq!(mia.ids(LIST).await, vec![amy, bo]);

        // Writes.
        let rename = json!({"nameGiven": "Renamed"});
        for (who, status) in [(&val, 403), (&oz, 404), (&mel, 200), (&mia, 200)] {
            let (got, out) = who.patch(&in_org(amy, north), rename.clone()).await;
            assert_eq!(got, status, "{out}");
            let (got, out) = who.patch(&one(bo), rename.clone()).await;
            assert_eq!(got, status, "without organizationId: {out}");
        }
        assert_eq!(val.delete(&in_org(amy, north)).await, 403);
        assert_eq!(oz.delete(&in_org(amy, north)).await, 404);
        assert_eq!(patient_count(&app), 3, "nothing was removed by them");
        assert_eq!(mel.delete(&in_org(amy, north)).await, 204);
        assert_eq!(mia.delete(&in_org(bo, north)).await, 204);
        assert_eq!(patient_count(&app), 1);

        // No token at all.
        let anon = script();
        let res = anon.get(app.at(LIST)).send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.json::<Value>().await.unwrap()["detail"].is_string());
        let res = anon.get(app.at(&one(cy))).send().await.unwrap();
        assert_eq!(res.status(), 401);
        let body = patient(south, "d@x.org", "D", "D", "1980-01-01");
        let res = anon.post(app.at(LIST)).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 401);
    }
);

// ---- list ------------------------------------------------------------------------------------

on_both_backends!(
    the_list_pages_by_twenty_with_absolute_links_and_refuses_a_page_past_the_end,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        for i in 0..25 {
            let (email, family) = (format!("p{i:02}@x.org"), format!("Fam{i:02}"));
            mel.add(north, &email, &family, "G", "1980-01-01").await;
        }
        let (status, first) = mel.get(&of_org(north)).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!((first["count"].as_i64(), ids(&first).len()), (Some(25), 20));
        assert!(first["previous"].is_null());
        let next = first["next"].as_str().expect("a next link");
        let absolute = format!("{}{LIST}?", app.url);
        assert!(next.starts_with(&absolute), "absolute: {next}");
        assert!(next.contains(&format!("organization_id={north}")), "{next}");
        assert!(next.contains("page=2"), "{next}");
        let (status, second) = mel.get(next).await;
        assert_eq!(status, 200);
        assert_eq!(listed(&second).0, 25);
        assert_eq!(ids(&second).len(), 5);
        assert!(second["next"].is_null());
        let previous = s(&second, "previous");
        assert!(previous.starts_with(&absolute), "{previous}");
        assert!(previous.contains("page=1"), "{previous}");
        let rows = [&first["results"], &second["results"]].map(|r| r.as_array().unwrap().clone());
        let families: Vec<&str> = rows.iter().flatten().map(|r| s(r, "nameFamily")).collect();
        let expected: Vec<String> = (0..25).map(|i| format!("Fam{i:02}")).collect();
        assert_eq!(families, expected, "by family name, each once");

        let (status, out) = mel.get(&format!("{}&page=3", of_org(north))).await;
        assert_eq!((status, out), (404, json!({"detail": "Invalid page."})));
        for size in ["pageSize=1000", "page_size=1000", "pageSize=25"] {
            let (status, all) = mel.get(&format!("{LIST}?{size}")).await;
            assert_eq!((status, ids(&all).len()), (200, 25), "{size}");
            assert!(all["next"].is_null());
        }
        let (_, out) = mel.get(&format!("{LIST}?pageSize=7&page=4")).await;
        assert_eq!(ids(&out).len(), 4, "the last, short page");
        for bad in ["pageSize=1001", "pageSize=0", "page=0", "page=x"] {
            let (status, out) = mel.get(&format!("{LIST}?{bad}")).await;
            assert_eq!(status, 400, "{bad}: {out}");
        }
        // An organization without patients has one empty page, and no second.
        let (eve_u, eve) = app.practitioner("eve@x.org", false);
        let empty = app.org("Empty", 0, &[(eve, "viewer")]);
        let eve = api(&app, eve_u);
        let (status, out) = eve.get(&of_org(empty)).await;
        let blank = json!({"count": 0, "next": null, "previous": null, "results": []});
        assert_eq!((status, out), (200, blank));
        assert_eq!(eve.get(&format!("{}&page=2", of_org(empty))).await.0, 404);
    }
);

on_both_backends!(
    the_list_filters_by_organization_patient_and_identifier_value,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let south = app.org("South", 0, &[(mel, "manager")]);
        let ward = app.org("Ward", north, &[]);
        let mel = api(&app, uid);
        let amy = patient(north, "a@x.org", "Adams", "Amy", "1980-01-01");
        let amy = with_ids(amy, &[("urn:mrn", "X-1"), ("urn:b", "Y-9")]);
        let a = mel.create(amy).await;
        let b = mel.add(north, "b@x.org", "Brown", "Bo", "1981-01-01").await;
        let c = mel.add(south, "c@x.org", "Cole", "Cy", "1982-01-01").await;
        let d = mel.add(ward, "d@x.org", "Dunn", "Di", "1983-01-01").await;

        let cases = [
            (String::new(), vec![a, b, c, d]),
            (format!("organization_id={north}"), vec![a, b]),
            (format!("organizationId={south}"), vec![c]),
            (format!("organization_id={ward}"), vec![d]),
            (format!("patient_id={b}"), vec![b]),
            (format!("patientId={a}&organization_id={north}"), vec![a]),
            (format!("patient_id={c}&organization_id={north}"), vec![]),
            ("patient_identifier_value=X-1".to_string(), vec![a]),
            ("patientIdentifierValue=Y-9".to_string(), vec![a]),
            ("patient_identifier_value=X".to_string(), vec![]),
            (
                format!("patient_identifier_value=X-1&organizationId={south}"),
                vec![],
            ),
        ];
        for (query, expected) in cases {
            let (status, out) = mel.get(&format!("{LIST}?{query}")).await;
            assert_eq!(status, 200, "{query}: {out}");
            assert_eq!(listed(&out), (expected.len(), expected), "{query}");
        }
        assert_eq!(mel.get(&format!("{LIST}?organization_id=abc")).await.0, 400);
        assert_eq!(mel.get(&format!("{LIST}?patient_id=abc")).await.0, 400);
    }
);

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

on_both_backends!(
    keyword_search_needs_every_term_to_start_a_word_ignoring_case_and_accents,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let (o, born) = (north, "1980-01-01");
        let john = patient(o, "john.smith@example.org", "Smith", "John", born);
        let john = mel
            .create(with_ids(john, &[("urn:mrn", "MRN-00123")]))
            .await;
        let jane = mel.add(o, "j@m.test", "Smith", "Jane", "1975-06-30").await;
        let maria = mel.add(o, "m@m.test", "Muñoz", "María", "1990-02-02").await;
        let gus = mel.add(o, "g@m.test", "Goldsmith", "Gus", born).await;

        let search = |q: &str| format!("{}&q={}", of_org(north), urlencode(q));
        let cases: Vec<(&str, Vec<i64>)> = vec![
            ("smith 1980-01-01", vec![john]),
            ("1980-01-01 SMITH", vec![john]),
            ("smith", vec![jane, john]),
            ("SmI", vec![jane, john]),
            ("jo smi", vec![john]),
            ("smith 1975", vec![jane]),
            ("munoz", vec![maria]),
            ("MUÑOZ maria", vec![maria]),
            ("mit", vec![]),
            ("oldsmith", vec![]),
            ("smith nobody", vec![]),
            ("example", vec![john]),
            ("john.smith@example.org", vec![john]),
            ("00123", vec![john]),
            ("mrn-00123", vec![john]),
            ("1980", vec![gus, john]),
            ("", vec![gus, maria, jane, john]),
        ];
        for (q, expected) in cases {
            let (status, out) = mel.get(&search(q)).await;
            assert_eq!(status, 200, "q={q}: {out}");
            assert_eq!(listed(&out), (expected.len(), expected), "q={q:?}");
        }
        // `next` keeps the search.
        let (_, out) = mel.get(&format!("{}&pageSize=1", search("smith"))).await;
        let next = s(&out, "next");
        assert!(next.contains("q=smith&pageSize=1"), "{next}");
        assert_eq!(mel.ids(next).await, vec![john]);

        // A name typed with a combining accent (as macOS sends it) is the same name.
        let zoe = mel
            .add(o, "z@m.test", "Zoe\u{301}", "Ine\u{301}s", born)
            .await;
        let found = mel.ids(&search("zoe ines")).await;
        assert_eq!(
            found,
            vec![zoe],
            "decomposed accents fold like composed ones"
        );
        assert_eq!(mel.ids(&search("Zoé")).await, vec![zoe]);
    }
);

// ---- global lookup ---------------------------------------------------------------------------

on_both_backends!(
    global_lookup_finds_only_patients_of_my_organizations_as_a_bare_list,
    |app: TestApp| async move {
        let (ana_u, ana) = app.practitioner("ana@x.org", false);
        let (val_u, val) = app.practitioner("val@x.org", false);
        let (oz_u, oz) = app.practitioner("oz@x.org", false);
        let north = app.org("North", 0, &[(ana, "member"), (val, "viewer")]);
        app.org("South", 0, &[(oz, "manager")]);
        let (ana, val, oz) = (api(&app, ana_u), api(&app, val_u), api(&app, oz_u));
        let id = ana.add(north, "pat@example.org", "Pat", "Lee", "").await;
        let lookup = |email: &str| format!("{LIST}/global_lookup?email={}", urlencode(email));

        for who in [&ana, &val] {
            let (status, out) = who.get(&lookup("PAT@Example.org")).await;
            assert_eq!(status, 200, "{out}");
            let list = out.as_array().expect("a bare list");
            assert_eq!(list.len(), 1);
            assert_eq!(list[0]["id"].as_i64(), Some(id));
            assert_eq!(s(&list[0], "telecomEmail"), "pat@example.org");
        }
        let (status, out) = oz.get(&lookup("pat@example.org")).await;
        assert_eq!(
            (status, out),
            (200, json!([])),
            "an outsider learns nothing"
        );
        let (status, out) = ana.get(&lookup("nobody@example.org")).await;
        assert_eq!((status, out), (200, json!([])));
        for path in [format!("{LIST}/global_lookup"), lookup("")] {
            let (status, out) = ana.get(&path).await;
            assert_eq!(status, 400, "{path}: {out}");
            messages(&out, "email");
        }
    }
);

// ---- update ----------------------------------------------------------------------------------

on_both_backends!(
    patch_changes_only_what_is_sent_never_the_email_and_replaces_identifiers_when_sent,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let mut john = patient(north, "john@x.org", "Smith", "John", "1980-01-01");
        john["telecomPhone"] = json!("+44 20 7946 0958");
        let john = with_ids(john, &[("urn:mrn", "A1"), ("urn:ins", "B2")]);
        let id = mel.create(john).await;
        let olga = mel.add(north, "o@x.org", "Other", "Olga", "").await;
        let path = in_org(id, north);
        let (_, before) = mel.get(&one(id)).await;

        let (status, after) = mel.patch(&path, json!({"nameGiven": "Johnny"})).await;
        assert_eq!(status, 200, "{after}");
        let mut expected = before.clone();
        expected["nameGiven"] = json!("Johnny");
        assert_eq!(after, expected, "only nameGiven changed");

        let snake = json!({"birth_date": "1979-12-31", "telecom_phone": "617-555-0100"});
        let (status, out) = mel.patch(&path, snake).await;
        assert_eq!(status, 200, "snake_case: {out}");
        let got = fields(&out, "birthDate telecomPhone nameGiven");
        assert_eq!(got, ["1979-12-31", "6175550100", "Johnny"]);

        let new_email = json!({"telecomEmail": "new@x.org", "nameFamily": "New"});
        let (status, out) = mel.patch(&path, new_email).await;
        assert_eq!(status, 400, "{out}");
        assert!(messages(&out, "telecomEmail").contains("sign-in"));
        let (_, now) = mel.get(&one(id)).await;
        let kept = fields(&now, "telecomEmail nameFamily");
        assert_eq!(kept, ["john@x.org", "Smith"], "nothing changed");
        // Sending back what was read, with the same e-mail, is fine.
        let mut echo = now.clone();
        echo["nameFamily"] = json!("Smyth");
        echo["telecomEmail"] = json!("JOHN@x.org");
        let (status, out) = mel.patch(&path, echo).await;
        assert_eq!((status, s(&out, "nameFamily")), (200, "Smyth"), "{out}");
        assert_eq!(pairs(&out), pairs(&now), "the same identifiers");

        let bad = [
            (json!({"birthDate": "31.12.1979"}), "birthDate"),
            (json!({"nameFamily": ""}), "nameFamily"),
            (json!({"telecomPhone": "abc"}), "telecomPhone"),
            (json!({"identifiers": [{"system": "x"}]}), "identifiers"),
        ];
        for (body, field) in bad {
            let (status, out) = mel.patch(&path, body.clone()).await;
            assert_eq!(status, 400, "{body}: {out}");
            messages(&out, field);
        }

        let replace = json!({"identifiers": [{"system": "urn:mrn", "value": "A9"}]});
        let (status, out) = mel.patch(&path, replace.clone()).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(pairs(&out), ["urn:mrn|A9"], "replaced, not added");
        let search = |q: &str| format!("{}&q={q}", of_org(north));
        assert_eq!(mel.ids(&search("a9")).await, vec![id], "search follows");
        assert!(mel.ids(&search("b2")).await.is_empty());
        assert_eq!(mel.ids(&search("smyth johnny")).await, vec![id]);

        // Another patient cannot take that identifier; an unknown patient is 404.
        let (status, out) = mel.patch(&in_org(olga, north), replace).await;
        assert_eq!(status, 400, "{out}");
        messages(&out, "identifiers");
        let (status, _) = mel.patch(&one(999_999), json!({"nameGiven": "X"})).await;
        assert_eq!(status, 404);
    }
);

// ---- removal and adding to another organization ----------------------------------------------

on_both_backends!(
    delete_removes_from_one_organization_and_the_record_goes_with_the_last,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let south = app.org("South", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let john = patient(north, "john@x.org", "Smith", "John", "1980-01-01");
        let john = with_ids(john, &[("urn:mrn", "A1")]);
        let (_, created) = mel.post(john.clone()).await;
        let id = created["id"].as_i64().unwrap();
        let user_id = created["jheUserId"].as_i64().unwrap();
        let add = format!("{LIST}/{id}/global_add_organization?organizationId={south}");
        assert_eq!(mel.patch(&add, Value::Null).await.0, 200);
        assert_eq!(mel.ids(LIST).await, vec![id], "listed once, though in two");

        let (status, out) = mel.send("DELETE", &one(id), Value::Null).await;
        assert_eq!(status, 400, "{out}");
        messages(&out, "organizationId");

        let (status, out) = mel.send("DELETE", &in_org(id, north), Value::Null).await;
        assert_eq!((status, out), (204, Value::Null));
        assert!(mel.ids(&of_org(north)).await.is_empty());
        assert_eq!(mel.ids(&of_org(south)).await, vec![id]);
        let (status, read) = mel.get(&one(id)).await;
        assert_eq!((status, org_ids(&read)), (200, vec![south]));
        assert_eq!(patient_count(&app), 1);
        assert_eq!(mel.delete(&in_org(id, north)).await, 404, "not in North");

        let last = format!("{LIST}/{id}?organization_id={south}");
        assert_eq!(mel.delete(&last).await, 204);
        let mut c = app.conn();
        let row = p::table.find(id).select(p::id);
        let row = row.first::<i64>(&mut *c).optional().unwrap();
        let user = u::table.find(user_id).select(u::id);
        let user = user.first::<i64>(&mut *c).optional().unwrap();
        let links = po::table.filter(po::patient_id.eq(id)).count();
        let links: i64 = links.get_result(&mut *c).unwrap();
        assert_eq!((row, user, links), (None, None, 0), "patient and user gone");
        let words = pst::table.filter(pst::patient_id.eq(id)).count();
        let words: i64 = words.get_result(&mut *c).unwrap();
        assert_eq!(words, 0, "its search words went with it");
        drop(c);
        assert_eq!(mel.get(&one(id)).await.0, 404);
        // Its e-mail and identifier are free again.
        mel.create(john).await;
    }
);

on_both_backends!(
    global_add_organization_adds_an_existing_patient_once_and_needs_membership_there,
    |app: TestApp| async move {
        let (ana_u, ana) = app.practitioner("ana@x.org", false);
        let (vic_u, vic) = app.practitioner("vic@x.org", false);
        let (oz_u, oz) = app.practitioner("oz@x.org", false);
        let (nel_u, nel) = app.practitioner("nel@x.org", false);
        let team = [(ana, "member"), (vic, "member"), (nel, "viewer")];
        let north = app.org("North", 0, &team);
        let south = app.org("South", 0, &[(ana, "member"), (vic, "viewer")]);
        let east = app.org("East", 0, &[(oz, "manager")]);
        let (ana, vic) = (api(&app, ana_u), api(&app, vic_u));
        let (oz, nel) = (api(&app, oz_u), api(&app, nel_u));
        let id = ana.add(north, "pat@x.org", "Pat", "Lee", "").await;
        let add = |org: i64| format!("{LIST}/{id}/global_add_organization?organizationId={org}");

        let (status, out) = vic.patch(&add(south), Value::Null).await;
        assert_eq!(status, 403, "a viewer of the target: {out}");
        assert!(ana.ids(&of_org(south)).await.is_empty());
        let (status, out) = oz.patch(&add(east), Value::Null).await;
        assert_eq!(status, 404, "someone who cannot see the patient: {out}");
        assert!(oz.ids(LIST).await.is_empty());

        let (status, out) = ana.patch(&add(south), Value::Null).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["id"].as_i64(), Some(id));
        assert_eq!(org_ids(&out), vec![north, south]);
        assert_eq!(ana.ids(&of_org(south)).await, vec![id]);
        let (status, again) = ana.patch(&add(south), Value::Null).await;
        assert_eq!((status, org_ids(&again)), (200, vec![north, south]));
        let q = po::table.filter(po::patient_id.eq(id)).count();
        assert_eq!(q.get_result::<i64>(&mut *app.conn()).unwrap(), 2);

        let no_org = format!("{LIST}/{id}/global_add_organization");
        let (status, out) = ana.patch(&no_org, Value::Null).await;
        assert_eq!(status, 400, "{out}");
        messages(&out, "organizationId");
        // Someone of North alone is not told about South.
        let (status, read) = nel.get(&one(id)).await;
        assert_eq!((status, org_ids(&read)), (200, vec![north]), "{read}");
    }
);

// ---- audit -----------------------------------------------------------------------------------

on_both_backends!(
    creating_reading_listing_updating_and_removing_patients_is_audited,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let (val_u, val) = app.practitioner("val@x.org", false);
        let north = app.org("North", 0, &[(mel, "member"), (val, "viewer")]);
        let mel = api(&app, uid);
        let patient_actions = || -> Vec<String> {
            let mut all = app.audit_actions();
            all.retain(|a| a.starts_with("patient."));
            all
        };
        let id = mel.add(north, "pat@x.org", "Pat", "Lee", "").await;
        assert_eq!(patient_actions(), ["patient.create"]);
        mel.get(&one(id)).await;
        mel.get(LIST).await;
        app.wait_for_audit("patient.list", 1).await;
        let path = in_org(id, north);
        assert_eq!(mel.patch(&path, json!({"nameGiven": "P"})).await.0, 200);
        assert_eq!(mel.delete(&path).await, 204);
        let expected = "patient.create patient.read patient.list patient.update patient.remove";
        let got = patient_actions();
        let mut at = 0;
        for action in expected.split(' ') {
            let found = got[at..].iter().position(|a| a == action);
            at += found.unwrap_or_else(|| panic!("{action} missing, in order, from {got:?}")) + 1;
        }
        // A refused write records no change.
        let body = patient(north, "q@x.org", "Q", "Q", "1980-01-01");
        assert_eq!(api(&app, val_u).post(body).await.0, 403);
        let creates = patient_actions();
        assert_eq!(creates.iter().filter(|a| *a == "patient.create").count(), 1);
    }
);
