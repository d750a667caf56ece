//! /api/v1/patients as a script sees it: the JHE shape, validation messages, conflicts, the role
//! matrix, paging, filters, keyword search, global lookup, update, removal, adding to another
//! organization, and the audit trail.

mod common;

use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{patient_organizations as po, patients as p, users as u};

// ---- helpers ---------------------------------------------------------------------------------

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
        let (status, out) = self.send("POST", "/api/v1/patients", body).await;
        assert_eq!(status, 201, "create: {out}");
        out["id"].as_i64().unwrap()
    }

    /// The ids on one page of a list.
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

fn ids(envelope: &Value) -> Vec<i64> {
    let results = envelope["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {envelope}"));
    results.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

fn detail(body: &Value) -> &str {
    body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail in {body}"))
}

/// The messages of a validation 400 for one field: `{"field": ["msg", ...]}`.
fn messages(body: &Value, field: &str) -> String {
    let list = body[field]
        .as_array()
        .unwrap_or_else(|| panic!("no message list for {field} in {body}"));
    assert!(!list.is_empty(), "an empty message list for {field}");
    let all: Vec<&str> = list.iter().map(|m| m.as_str().unwrap()).collect();
    all.join(" ")
}

fn patient_count(app: &TestApp) -> i64 {
    p::table.count().get_result(&mut *app.conn()).unwrap()
}

/// The organizations a patient JSON lists, by id.
fn org_ids(patient: &Value) -> Vec<i64> {
    let orgs = patient["organizations"].as_array().unwrap();
    orgs.iter().map(|o| o["id"].as_i64().unwrap()).collect()
}

// ---- create ----------------------------------------------------------------------------------

on_both_backends!(
    a_member_creates_a_patient_and_gets_the_jhe_shape_back_normalised,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let body = json!({
            "organizationId": north, "telecomEmail": " John.Smith@Example.ORG ",
            "nameFamily": "Smith", "nameGiven": "John", "birthDate": "1980-01-01",
            "telecomPhone": "+1 (617) 555-0100",
            "identifiers": [{"system": "urn:mrn", "value": "MRN-00123"}]
        });
        let (status, out) = mel.send("POST", "/api/v1/patients", body).await;
        assert_eq!(status, 201, "{out}");
        let mut keys: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        let expected = [
            "birthDate",
            "id",
            "identifiers",
            "jheUserId",
            "nameFamily",
            "nameGiven",
            "organizations",
            "telecomEmail",
            "telecomPhone",
        ];
        assert_eq!(keys, expected, "exactly the JHE keys, camelCase");
        let id = out["id"].as_i64().expect("integer id");
        assert!(out["jheUserId"].is_i64());
        assert_eq!(
            out["telecomEmail"], "john.smith@example.org",
            "trimmed, lower-case"
        );
        assert_eq!(
            out["telecomPhone"], "+16175550100",
            "digits and the leading +"
        );
        assert_eq!(
            (out["nameFamily"].as_str(), out["nameGiven"].as_str()),
            (Some("Smith"), Some("John"))
        );
        assert_eq!(out["birthDate"], "1980-01-01");
        let ident = &out["identifiers"][0];
        assert!(ident["id"].is_i64(), "identifiers carry their id: {ident}");
        assert_eq!(
            (&ident["system"], &ident["value"]),
            (&json!("urn:mrn"), &json!("MRN-00123"))
        );
        assert_eq!(out["identifiers"].as_array().unwrap().len(), 1);
        let org = &out["organizations"][0];
        assert_eq!(
            (org["id"].as_i64(), org["name"].as_str()),
            (Some(north), Some("North"))
        );
        assert_eq!(org["currentUserRole"], "member");

        // The stored record reads back the same.
        let (status, read) = mel.get(&format!("/api/v1/patients/{id}")).await;
        assert_eq!((status, &read), (200, &out));
        let (email, user_id): (String, i64) = p::table
            .find(id)
            .select((p::telecom_email, p::user_id))
            .first(&mut *app.conn())
            .unwrap();
        assert_eq!(
            (email.as_str(), user_id),
            ("john.smith@example.org", out["jheUserId"].as_i64().unwrap())
        );

        // snake_case keys work too, and the optional fields may be left out.
        let snake = json!({"organization_id": north.to_string(), "telecom_email": "ana@x.org",
                           "name_family": "Silva", "name_given": "Ana", "birth_date": "1990-12-31",
                           "telecom_phone": "617.555.0199"});
        let (status, out) = mel.send("POST", "/api/v1/patients", snake).await;
        assert_eq!(status, 201, "{out}");
        assert_eq!(
            (out["nameFamily"].as_str(), out["birthDate"].as_str()),
            (Some("Silva"), Some("1990-12-31"))
        );
        assert_eq!(out["telecomPhone"], "6175550199");
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
        let future = (chrono::Utc::now().date_naive() + chrono::Days::new(2)).to_string();
        let cases: Vec<(&str, Value, &str)> = vec![
            ("telecomEmail", json!("not-an-email"), "@"),
            ("telecomEmail", json!(""), "e-mail"),
            ("nameFamily", json!(""), "family name"),
            ("nameGiven", json!("  "), "given name"),
            ("birthDate", json!("01/02/1980"), "YYYY-MM-DD"),
            ("birthDate", json!("1980-02-30"), "YYYY-MM-DD"),
            ("birthDate", json!(future), "future"),
            ("telecomPhone", json!("call me maybe"), "digits"),
            ("telecomPhone", json!("12"), "digits"),
            (
                "identifiers",
                json!([{"system": "urn:mrn"}]),
                "both a system and a value",
            ),
            (
                "identifiers",
                json!([{"system": "urn:mrn", "value": ""}]),
                "both a system and a value",
            ),
        ];
        for (field, value, says) in cases {
            let mut body = good();
            body[field] = value.clone();
            let (status, out) = mel.send("POST", "/api/v1/patients", body).await;
            assert_eq!(status, 400, "{field}={value}: {out}");
            let msg = messages(&out, field);
            assert!(
                msg.contains(says),
                "{field}={value}: {msg:?} should say {says:?}"
            );
        }
        // Missing names together: one message for each.
        let body = json!({"organizationId": north, "telecomEmail": "x@x.org"});
        let (status, out) = mel.send("POST", "/api/v1/patients", body).await;
        assert_eq!(status, 400);
        messages(&out, "nameFamily");
        messages(&out, "nameGiven");

        let mut body = good();
        body.as_object_mut().unwrap().remove("organizationId");
        let (status, out) = mel.send("POST", "/api/v1/patients", body).await;
        assert_eq!(status, 400, "{out}");
        assert!(messages(&out, "organizationId").contains("organization"));
        assert_eq!(patient_count(&app), 0, "nothing was stored");
        mel.create(good()).await; // the good body itself is fine
    }
);

on_both_backends!(
    a_taken_email_or_identifier_is_refused_and_the_message_says_what_to_do,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let south = app.org("South", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let mut first = patient(north, "john@x.org", "Smith", "John", "1980-01-01");
        first["identifiers"] = json!([{"system": "urn:mrn", "value": "A1"}]);
        mel.create(first).await;

        let again = patient(north, "JOHN@x.org", "Smith", "Johnny", "1980-01-01");
        let (status, out) = mel.send("POST", "/api/v1/patients", again).await;
        assert_eq!(status, 409, "{out}");
        assert!(
            detail(&out).contains("already a patient of this organization"),
            "{out}"
        );

        let elsewhere = patient(south, "john@x.org", "Smith", "John", "1980-01-01");
        let (status, out) = mel.send("POST", "/api/v1/patients", elsewhere).await;
        assert_eq!(status, 409, "{out}");
        let d = detail(&out);
        assert!(
            d.contains("another organization") && d.contains("add them"),
            "{d}"
        );

        let mut clash = patient(south, "other@x.org", "Other", "Olga", "1970-01-01");
        clash["identifiers"] = json!([{"system": "urn:mrn", "value": "A1"}]);
        let (status, out) = mel.send("POST", "/api/v1/patients", clash).await;
        assert_eq!(status, 400, "{out}");
        assert!(messages(&out, "identifiers").contains("A1"));
        // The same value under another system is a different identifier.
        let mut fine = patient(south, "other@x.org", "Other", "Olga", "1970-01-01");
        fine["identifiers"] = json!([{"system": "urn:insurance", "value": "A1"}]);
        mel.create(fine).await;

        let staff = patient(north, "MEL@x.org", "Mel", "Staff", "1970-01-01");
        let (status, out) = mel.send("POST", "/api/v1/patients", staff).await;
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
        let members = [(mia, "manager"), (mel, "member"), (val, "viewer")];
        let north = app.org("North", 0, &members);
        let south = app.org("South", 0, &[(oz, "member")]);
        let (mia, mel, val, oz, su) = (
            api(&app, mia_u),
            api(&app, mel_u),
            api(&app, val_u),
            api(&app, oz_u),
            api(&app, su_u),
        );

        let by_mia = mia
            .create(patient(north, "a@x.org", "Adams", "Amy", "1980-01-01"))
            .await;
        let by_mel = mel
            .create(patient(north, "b@x.org", "Brown", "Bo", "1981-01-01"))
            .await;
        let in_south = oz
            .create(patient(south, "c@x.org", "Cole", "Cy", "1982-01-01"))
            .await;
        let (status, out) = val
            .send(
                "POST",
                "/api/v1/patients",
                patient(north, "v@x.org", "V", "V", "1980-01-01"),
            )
            .await;
        assert_eq!(status, 403, "{out}");
        assert!(detail(&out).contains("role"), "the viewer reads why: {out}");

        let one = |id: i64| format!("/api/v1/patients/{id}");
        let in_north = |id: i64| format!("/api/v1/patients/{id}?organizationId={north}");
        // Reads.
        for who in [&mia, &mel, &val, &su] {
            assert_eq!(who.get(&one(by_mia)).await.0, 200);
            let listed = who.ids("/api/v1/patients").await;
            assert!(
                listed.contains(&by_mia) && listed.contains(&by_mel),
                "{listed:?}"
            );
        }
        let (status, out) = oz.get(&one(by_mia)).await;
        assert_eq!(status, 404, "an outsider is told nothing: {out}");
        assert_eq!(oz.ids("/api/v1/patients").await, vec![in_south]);
        let (status, _) = oz
            .get(&format!("/api/v1/patients?organization_id={north}"))
            .await;
        assert_eq!(
            status, 404,
            "another organization's list does not exist for them"
        );
        let all = su.ids("/api/v1/patients").await;
        assert_eq!(all.len(), 3, "a superuser sees every organization: {all:?}");
        assert!(mia
            .ids("/api/v1/patients")
            .await
            .iter()
            .all(|id| *id != in_south));

        // Writes.
        let rename = json!({"nameGiven": "Renamed"});
        for (who, status) in [(&val, 403), (&oz, 404), (&mel, 200), (&mia, 200)] {
            let (got, out) = who.send("PATCH", &in_north(by_mia), rename.clone()).await;
            assert_eq!(got, status, "{out}");
            let (got, out) = who.send("PATCH", &one(by_mel), rename.clone()).await;
            assert_eq!(got, status, "without organizationId: {out}");
        }
        for (who, status) in [(&val, 403), (&oz, 404)] {
            let (got, out) = who.send("DELETE", &in_north(by_mia), Value::Null).await;
            assert_eq!(got, status, "{out}");
        }
        assert_eq!(patient_count(&app), 3, "nothing was removed by them");
        assert_eq!(
            mel.send("DELETE", &in_north(by_mia), Value::Null).await.0,
            204
        );
        assert_eq!(
            mia.send("DELETE", &in_north(by_mel), Value::Null).await.0,
            204
        );
        assert_eq!(patient_count(&app), 1);

        // No token at all.
        let anon = script();
        let res = anon.get(app.at("/api/v1/patients")).send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.json::<Value>().await.unwrap()["detail"].is_string());
        let res = anon.get(app.at(&one(in_south))).send().await.unwrap();
        assert_eq!(res.status(), 401);
        let body = patient(south, "d@x.org", "D", "D", "1980-01-01");
        let res = anon
            .post(app.at("/api/v1/patients"))
            .json(&body)
            .send()
            .await
            .unwrap();
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
            let body = patient(
                north,
                &format!("p{i:02}@x.org"),
                &format!("Fam{i:02}"),
                "G",
                "1980-01-01",
            );
            mel.create(body).await;
        }
        let (status, first) = mel
            .get(&format!("/api/v1/patients?organization_id={north}"))
            .await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["count"], 25);
        assert_eq!(ids(&first).len(), 20, "20 by default");
        assert!(first["previous"].is_null());
        let next = first["next"].as_str().expect("a next link");
        assert!(
            next.starts_with(&format!("{}/api/v1/patients?", app.url)),
            "absolute: {next}"
        );
        assert!(
            next.contains(&format!("organization_id={north}")) && next.contains("page=2"),
            "{next}"
        );
        let (status, second) = mel.get(next).await;
        assert_eq!(status, 200);
        assert_eq!(
            (second["count"].as_i64(), ids(&second).len()),
            (Some(25), 5)
        );
        assert!(second["next"].is_null());
        let previous = second["previous"].as_str().expect("a previous link");
        assert!(
            previous.starts_with("http://") && previous.contains("page=1"),
            "{previous}"
        );
        let mut seen = [ids(&first), ids(&second)].concat();
        let families: Vec<String> = first["results"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second["results"].as_array().unwrap())
            .map(|r| r["nameFamily"].as_str().unwrap().to_string())
            .collect();
        let mut sorted = families.clone();
        sorted.sort();
        assert_eq!(families, sorted, "ordered by family name across pages");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 25, "every patient once");

        let (status, out) = mel
            .get(&format!("/api/v1/patients?organization_id={north}&page=3"))
            .await;
        assert_eq!((status, out), (404, json!({"detail": "Invalid page."})));
        for size in ["pageSize=1000", "page_size=1000", "pageSize=25"] {
            let (status, all) = mel.get(&format!("/api/v1/patients?{size}")).await;
            assert_eq!((status, ids(&all).len()), (200, 25), "{size}");
            assert!(all["next"].is_null());
        }
        let (_, out) = mel.get("/api/v1/patients?pageSize=7&page=4").await;
        assert_eq!(ids(&out).len(), 4, "the last short page");
        for bad in ["pageSize=1001", "pageSize=0", "page=0", "page=x"] {
            let (status, out) = mel.get(&format!("/api/v1/patients?{bad}")).await;
            assert_eq!(status, 400, "{bad}: {out}");
        }
        // An organization without patients has one empty page, and no second.
        let empty = app.org(
            "Empty",
            0,
            &[(app.practitioner("e@x.org", false).1, "manager")],
        );
        let e = api(&app, app.practitioner("eve@x.org", true).0);
        let (status, out) = e
            .get(&format!("/api/v1/patients?organization_id={empty}"))
            .await;
        let blank = json!({"count": 0, "next": null, "previous": null, "results": []});
        assert_eq!((status, out), (200, blank));
        let (status, _) = e
            .get(&format!("/api/v1/patients?organization_id={empty}&page=2"))
            .await;
        assert_eq!(status, 404);
    }
);

on_both_backends!(
    the_list_filters_by_organization_patient_and_identifier_value,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let south = app.org("South", 0, &[(mel, "manager")]);
        let mel = api(&app, uid);
        let mut a = patient(north, "a@x.org", "Adams", "Amy", "1980-01-01");
        a["identifiers"] =
            json!([{"system": "urn:mrn", "value": "X-1"}, {"system": "urn:b", "value": "Y-9"}]);
        let a = mel.create(a).await;
        let b = mel
            .create(patient(north, "b@x.org", "Brown", "Bo", "1981-01-01"))
            .await;
        let c = mel
            .create(patient(south, "c@x.org", "Cole", "Cy", "1982-01-01"))
            .await;

        let cases = [
            (String::new(), vec![a, b, c]),
            (format!("organization_id={north}"), vec![a, b]),
            (format!("organizationId={south}"), vec![c]),
            (format!("patient_id={b}"), vec![b]),
            (format!("patientId={a}&organization_id={north}"), vec![a]),
            (format!("patient_id={c}&organization_id={north}"), vec![]),
            ("patient_identifier_value=X-1".to_string(), vec![a]),
            ("patient_identifier_value=Y-9".to_string(), vec![a]),
            ("patient_identifier_value=X".to_string(), vec![]),
        ];
        for (query, expected) in cases {
            let (status, out) = mel.get(&format!("/api/v1/patients?{query}")).await;
            assert_eq!(status, 200, "{query}: {out}");
            assert_eq!(ids(&out), expected, "{query}");
            assert_eq!(
                out["count"].as_u64(),
                Some(expected.len() as u64),
                "{query}"
            );
        }
        let (status, out) = mel.get("/api/v1/patients?organization_id=abc").await;
        assert_eq!(status, 400, "{out}");
    }
);

on_both_backends!(
    keyword_search_needs_every_term_to_start_a_word_ignoring_case_and_accents,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let mut john = patient(
            north,
            "john.smith@example.org",
            "Smith",
            "John",
            "1980-01-01",
        );
        john["identifiers"] = json!([{"system": "urn:mrn", "value": "MRN-00123"}]);
        let john = mel.create(john).await;
        let jane = mel
            .create(patient(
                north,
                "jane@mail.test",
                "Smith",
                "Jane",
                "1975-06-30",
            ))
            .await;
        let maria = mel
            .create(patient(
                north,
                "maria@mail.test",
                "Muñoz",
                "María",
                "1990-02-02",
            ))
            .await;
        let gold = mel
            .create(patient(
                north,
                "g@mail.test",
                "Goldsmith",
                "Gus",
                "1980-01-01",
            ))
            .await;

        let search = |q: &str| {
            format!(
                "/api/v1/patients?organization_id={north}&q={}",
                urlencode(q)
            )
        };
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
            ("1980", vec![gold, john]),
            ("", vec![gold, maria, jane, john]),
        ];
        for (q, expected) in cases {
            let (status, out) = mel.get(&search(q)).await;
            assert_eq!(status, 200, "q={q}: {out}");
            assert_eq!(ids(&out), expected, "q={q:?}");
            assert_eq!(
                out["count"].as_u64(),
                Some(expected.len() as u64),
                "q={q:?}"
            );
        }
        // `next` keeps the search.
        let (_, out) = mel.get(&format!("{}&pageSize=1", search("smith"))).await;
        let next = out["next"].as_str().unwrap();
        assert!(
            next.contains("q=smith") && next.contains("pageSize=1"),
            "{next}"
        );
        assert_eq!(mel.ids(next).await, vec![john]);
    }
);

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

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
        let id = ana
            .create(patient(
                north,
                "pat@example.org",
                "Pat",
                "Lee",
                "1980-01-01",
            ))
            .await;

        for who in [&ana, &val] {
            let (status, out) = who
                .get("/api/v1/patients/global_lookup?email=PAT@Example.org")
                .await;
            assert_eq!(status, 200, "{out}");
            let list = out.as_array().expect("a bare list");
            assert_eq!(list.len(), 1);
            assert_eq!(list[0]["id"].as_i64(), Some(id));
            assert_eq!(list[0]["telecomEmail"], "pat@example.org");
        }
        let (status, out) = oz
            .get("/api/v1/patients/global_lookup?email=pat@example.org")
            .await;
        assert_eq!(
            (status, out),
            (200, json!([])),
            "an outsider learns nothing"
        );
        let (status, out) = ana
            .get("/api/v1/patients/global_lookup?email=nobody@example.org")
            .await;
        assert_eq!((status, out), (200, json!([])));
        for path in [
            "/api/v1/patients/global_lookup",
            "/api/v1/patients/global_lookup?email=",
        ] {
            let (status, out) = ana.get(path).await;
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
        let mut body = patient(north, "john@x.org", "Smith", "John", "1980-01-01");
        body["telecomPhone"] = json!("+44 20 7946 0958");
        body["identifiers"] =
            json!([{"system": "urn:mrn", "value": "A1"}, {"system": "urn:ins", "value": "B2"}]);
        let id = mel.create(body).await;
        mel.create(patient(north, "other@x.org", "Other", "Olga", "1970-01-01"))
            .await;
        let path = format!("/api/v1/patients/{id}?organizationId={north}");
        let (_, before) = mel.get(&format!("/api/v1/patients/{id}")).await;

        let (status, after) = mel
            .send("PATCH", &path, json!({"nameGiven": "Johnny"}))
            .await;
        assert_eq!(status, 200, "{after}");
        let mut expected = before.clone();
        expected["nameGiven"] = json!("Johnny");
        assert_eq!(
            after, expected,
            "only the given name changed, identifiers kept with their ids"
        );

        let (status, out) = mel
            .send(
                "PATCH",
                &path,
                json!({"birth_date": "1979-12-31", "telecom_phone": "617-555-0100"}),
            )
            .await;
        assert_eq!(status, 200, "snake_case: {out}");
        assert_eq!(
            (out["birthDate"].as_str(), out["telecomPhone"].as_str()),
            (Some("1979-12-31"), Some("6175550100"))
        );

        let (status, out) = mel
            .send(
                "PATCH",
                &path,
                json!({"telecomEmail": "new@x.org", "nameFamily": "New"}),
            )
            .await;
        assert_eq!(status, 400, "{out}");
        assert!(messages(&out, "telecomEmail").contains("sign-in"));
        let (_, now) = mel.get(&format!("/api/v1/patients/{id}")).await;
        assert_eq!(
            (now["telecomEmail"].as_str(), now["nameFamily"].as_str()),
            (Some("john@x.org"), Some("Smith")),
            "nothing changed"
        );
        // Sending back what was read (the same e-mail) is fine.
        let mut echo = now.clone();
        echo["nameFamily"] = json!("Smyth");
        echo["telecomEmail"] = json!("JOHN@x.org");
        let (status, out) = mel.send("PATCH", &path, echo).await;
        assert_eq!(
            (status, out["nameFamily"].as_str()),
            (200, Some("Smyth")),
            "{out}"
        );
        assert_eq!(out["identifiers"], now["identifiers"]);

        for (bad, field) in [
            (json!({"birthDate": "31.12.1979"}), "birthDate"),
            (json!({"nameFamily": ""}), "nameFamily"),
            (json!({"telecomPhone": "abc"}), "telecomPhone"),
        ] {
            let (status, out) = mel.send("PATCH", &path, bad.clone()).await;
            assert_eq!(status, 400, "{bad}: {out}");
            messages(&out, field);
        }

        let replace = json!({"identifiers": [{"system": "urn:mrn", "value": "A9"}]});
        let (status, out) = mel.send("PATCH", &path, replace).await;
        assert_eq!(status, 200, "{out}");
        let idents = out["identifiers"].as_array().unwrap();
        assert_eq!(idents.len(), 1, "replaced, not added: {out}");
        assert_eq!(
            (idents[0]["system"].as_str(), idents[0]["value"].as_str()),
            (Some("urn:mrn"), Some("A9"))
        );
        let search = |q: &str| format!("/api/v1/patients?organization_id={north}&q={q}");
        assert_eq!(
            mel.ids(&search("a9")).await,
            vec![id],
            "the search words follow"
        );
        assert_eq!(mel.ids(&search("b2")).await, Vec::<i64>::new());
        assert_eq!(mel.ids(&search("smyth")).await, vec![id]);
        assert_eq!(mel.ids(&search("johnny")).await, vec![id]);

        // Another patient cannot take that identifier.
        let other = mel.ids(&search("olga")).await[0];
        let steal = json!({"identifiers": [{"system": "urn:mrn", "value": "A9"}]});
        let (status, out) = mel
            .send(
                "PATCH",
                &format!("/api/v1/patients/{other}?organizationId={north}"),
                steal,
            )
            .await;
        assert_eq!(status, 400, "{out}");
        messages(&out, "identifiers");
        let (status, _) = mel
            .send(
                "PATCH",
                "/api/v1/patients/999999",
                json!({"nameGiven": "X"}),
            )
            .await;
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
        let mut body = patient(north, "john@x.org", "Smith", "John", "1980-01-01");
        body["identifiers"] = json!([{"system": "urn:mrn", "value": "A1"}]);
        let (_, created) = mel.send("POST", "/api/v1/patients", body.clone()).await;
        let (id, user_id) = (
            created["id"].as_i64().unwrap(),
            created["jheUserId"].as_i64().unwrap(),
        );
        let add = format!("/api/v1/patients/{id}/global_add_organization?organizationId={south}");
        assert_eq!(mel.send("PATCH", &add, Value::Null).await.0, 200);

        let (status, out) = mel
            .send("DELETE", &format!("/api/v1/patients/{id}"), Value::Null)
            .await;
        assert_eq!(status, 400, "{out}");
        messages(&out, "organizationId");

        let (status, out) = mel
            .send(
                "DELETE",
                &format!("/api/v1/patients/{id}?organizationId={north}"),
                Value::Null,
            )
            .await;
        assert_eq!((status, out), (204, Value::Null));
        assert!(mel
            .ids(&format!("/api/v1/patients?organization_id={north}"))
            .await
            .is_empty());
        assert_eq!(
            mel.ids(&format!("/api/v1/patients?organization_id={south}"))
                .await,
            vec![id]
        );
        let (status, read) = mel.get(&format!("/api/v1/patients/{id}")).await;
        assert_eq!((status, org_ids(&read)), (200, vec![south]));
        assert_eq!(patient_count(&app), 1);
        let (status, _) = mel
            .send(
                "DELETE",
                &format!("/api/v1/patients/{id}?organizationId={north}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, 404, "no longer in North");

        let (status, _) = mel
            .send(
                "DELETE",
                &format!("/api/v1/patients/{id}?organization_id={south}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, 204);
        let mut c = app.conn();
        let row: Option<i64> = p::table
            .find(id)
            .select(p::id)
            .first(&mut *c)
            .optional()
            .unwrap();
        let user: Option<i64> = u::table
            .find(user_id)
            .select(u::id)
            .first(&mut *c)
            .optional()
            .unwrap();
        let links: i64 = po::table
            .filter(po::patient_id.eq(id))
            .count()
            .get_result(&mut *c)
            .unwrap();
        assert_eq!(
            (row, user, links),
            (None, None, 0),
            "the patient and its user are gone"
        );
        drop(c);
        assert_eq!(mel.get(&format!("/api/v1/patients/{id}")).await.0, 404);
        // Its e-mail and identifier are free again.
        body["organizationId"] = json!(south);
        mel.create(body).await;
    }
);

on_both_backends!(
    global_add_organization_adds_an_existing_patient_once_and_needs_membership_there,
    |app: TestApp| async move {
        let (ana_u, ana) = app.practitioner("ana@x.org", false);
        let (vic_u, vic) = app.practitioner("vic@x.org", false);
        let (oz_u, oz) = app.practitioner("oz@x.org", false);
        let (nel_u, nel) = app.practitioner("nel@x.org", false);
        let north = app.org(
            "North",
            0,
            &[(ana, "member"), (vic, "member"), (nel, "viewer")],
        );
        let south = app.org("South", 0, &[(ana, "member"), (vic, "viewer")]);
        let east = app.org("East", 0, &[(oz, "manager")]);
        let (ana, vic, oz, nel) = (
            api(&app, ana_u),
            api(&app, vic_u),
            api(&app, oz_u),
            api(&app, nel_u),
        );
        let id = ana
            .create(patient(north, "pat@x.org", "Pat", "Lee", "1980-01-01"))
            .await;
        let add = |org: i64| {
            format!("/api/v1/patients/{id}/global_add_organization?organizationId={org}")
        };
        let south_list = format!("/api/v1/patients?organization_id={south}");

        let (status, out) = vic.send("PATCH", &add(south), Value::Null).await;
        assert_eq!(status, 403, "a viewer of the target: {out}");
        assert!(ana.ids(&south_list).await.is_empty());
        let (status, out) = oz.send("PATCH", &add(east), Value::Null).await;
        assert_eq!(status, 404, "someone who cannot see the patient: {out}");
        assert!(oz.ids("/api/v1/patients").await.is_empty());

        let (status, out) = ana.send("PATCH", &add(south), Value::Null).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["id"].as_i64(), Some(id));
        let mut orgs = org_ids(&out);
        orgs.sort();
        assert_eq!(orgs, vec![north, south]);
        assert_eq!(ana.ids(&south_list).await, vec![id]);
        let (status, again) = ana.send("PATCH", &add(south), Value::Null).await;
        assert_eq!(
            (status, org_ids(&again).len()),
            (200, 2),
            "twice is fine: {again}"
        );
        let links: i64 = po::table
            .filter(po::patient_id.eq(id))
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(links, 2);

        let (status, out) = ana
            .send(
                "PATCH",
                &format!("/api/v1/patients/{id}/global_add_organization"),
                Value::Null,
            )
            .await;
        assert_eq!(status, 400, "{out}");
        messages(&out, "organizationId");
        // A practitioner of North alone is not told about South.
        let (status, read) = nel.get(&format!("/api/v1/patients/{id}")).await;
        assert_eq!((status, org_ids(&read)), (200, vec![north]), "{read}");
    }
);

// ---- audit -----------------------------------------------------------------------------------

on_both_backends!(
    creating_reading_listing_updating_and_removing_patients_is_audited,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let id = mel
            .create(patient(north, "pat@x.org", "Pat", "Lee", "1980-01-01"))
            .await;
        let expected = [
            "patient.create",
            "patient.read",
            "patient.list",
            "patient.update",
            "patient.remove",
        ];
        assert!(app.audit_actions().contains(&expected[0].to_string()));
        assert!(!app
            .audit_actions()
            .iter()
            .any(|a| expected[1..].contains(&a.as_str())));
        mel.get(&format!("/api/v1/patients/{id}")).await;
        mel.get("/api/v1/patients").await;
        let path = format!("/api/v1/patients/{id}?organizationId={north}");
        assert_eq!(
            mel.send("PATCH", &path, json!({"nameGiven": "P"})).await.0,
            200
        );
        assert_eq!(mel.send("DELETE", &path, Value::Null).await.0, 204);
        let actions = app.audit_actions();
        let patient_actions: Vec<&str> = actions
            .iter()
            .map(String::as_str)
            .filter(|a| a.starts_with("patient."))
            .collect();
        for action in expected {
            assert!(
                patient_actions.contains(&action),
                "{action} missing from {patient_actions:?}"
            );
        }
        let pos = |a: &str| patient_actions.iter().position(|x| *x == a).unwrap();
        assert!(
            pos("patient.create") < pos("patient.read")
                && pos("patient.update") < pos("patient.remove")
        );
        // A refused write leaves no trace of a change.
        let (v_u, v) = app.practitioner("val@x.org", false);
        let south = app.org("South", 0, &[(v, "viewer")]);
        let body = patient(south, "q@x.org", "Q", "Q", "1980-01-01");
        assert_eq!(
            api(&app, v_u)
                .send("POST", "/api/v1/patients", body)
                .await
                .0,
            403
        );
        let creates = app
            .audit_actions()
            .iter()
            .filter(|a| *a == "patient.create")
            .count();
        assert_eq!(creates, 1);
    }
);
