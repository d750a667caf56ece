//! `cohort import-patients` on real patient lists (tests/fixtures/import): what it reads, what
//! it refuses and why, the summary and rejected lines it prints, what the tables hold after
//! it, importing again, patients of other organizations, studies, invitations, the audit
//! trail, and the per-row outcome CSV the library gives the console.

mod common;

use std::path::Path;
use std::process::Command;

use chrono::{NaiveDate, NaiveDateTime};
use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{
    audit_events as a, invitations as inv, patient_identifiers as pi, patient_organizations as po,
    patients as p, study_patients as sp, users as u,
};
use cohort::study::{Status, ValidStudy};

// ---- helpers ---------------------------------------------------------------------------------

const MEMBER: &str = "member@example.org";

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
        .display()
        .to_string()
}

/// A member of a new organization "North Clinic": (organization id, member's user id).
fn north(app: &TestApp) -> (i64, i64) {
    let (uid, pid) = app.practitioner(MEMBER, false);
    (app.org("North Clinic", 0, &[(pid, "member")]), uid)
}

/// A study of `org` made directly in the database.
fn study(app: &TestApp, org: i64, name: &str, status: Status) -> i64 {
    let s = ValidStudy {
        name: name.into(),
        description: "For the import tests.".into(),
        icon_url: None,
        status,
    };
    cohort::study::repo::insert(&mut app.conn(), org, &s).unwrap()
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    out: String,
    err: String,
}

/// The `cohort` binary with the test server's settings (its database, data dir, key and
/// address), started in the data dir so no developer's .env is read.
fn cohort(app: &TestApp) -> Command {
    let config = &app.state.config;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cohort"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("COHORT_DATA_DIR", &app.data_dir)
        .env("DATABASE_URL", &config.database_url)
        .env(
            "COHORT_SECRET_KEY",
            config.secret_key.as_deref().unwrap_or_default(),
        )
        .env("COHORT_PUBLIC_URL", &app.url)
        .current_dir(&app.data_dir);
    cmd
}

fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("cohort runs");
    Run {
        code: out.status.code().expect("cohort exits, not killed"),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cohort import-patients --org ORG --as member@example.org ARGS FILE`.
fn import(app: &TestApp, org: i64, args: &[&str], file: &str) -> Run {
    let mut cmd = cohort(app);
    cmd.args(["import-patients", "--org", &org.to_string(), "--as", MEMBER])
        .args(args)
        .arg(fixture(file));
    run(cmd)
}

/// The summary block the command prints, in its order.
fn summary(created: u32, added: u32, updated: u32, unchanged: u32, rejected: u32) -> String {
    format!(
        "created: {created}\nadded to this organization: {added}\nupdated: {updated}\n\
         unchanged: {unchanged}\nrejected: {rejected}"
    )
}

/// How many rows the tables an import writes to hold.
#[derive(Debug, PartialEq)]
struct Counts {
    patients: i64,
    users: i64,
    links: i64,
    identifiers: i64,
    enrolments: i64,
    invitations: i64,
    import_events: i64,
}

fn counts(app: &TestApp) -> Counts {
    let mut c = app.conn();
    Counts {
        patients: p::table.count().get_result(&mut c).unwrap(),
        users: u::table.count().get_result(&mut c).unwrap(),
        links: po::table.count().get_result(&mut c).unwrap(),
        identifiers: pi::table.count().get_result(&mut c).unwrap(),
        enrolments: sp::table.count().get_result(&mut c).unwrap(),
        invitations: inv::table.count().get_result(&mut c).unwrap(),
        import_events: a::table
            .filter(a::action.eq("patient.import"))
            .count()
            .get_result(&mut c)
            .unwrap(),
    }
}

/// A patient as stored, found by e-mail: (family, given, birth date, phone).
type Stored = (String, String, Option<NaiveDate>, Option<String>);

fn stored(app: &TestApp, email: &str) -> Option<Stored> {
    p::table
        .filter(p::telecom_email.eq(email))
        .select((
            p::name_family,
            p::name_given,
            p::birth_date,
            p::telecom_phone,
        ))
        .first(&mut app.conn())
        .optional()
        .unwrap()
}

fn patient_id(app: &TestApp, email: &str) -> i64 {
    p::table
        .filter(p::telecom_email.eq(email))
        .select(p::id)
        .first(&mut app.conn())
        .unwrap_or_else(|e| panic!("{email} is a patient: {e}"))
}

fn identifiers(app: &TestApp, email: &str) -> Vec<(String, String)> {
    pi::table
        .inner_join(p::table)
        .filter(p::telecom_email.eq(email))
        .select((pi::system, pi::value))
        .order((pi::system, pi::value))
        .load(&mut app.conn())
        .unwrap()
}

fn organizations(app: &TestApp, email: &str) -> Vec<i64> {
    po::table
        .inner_join(p::table)
        .filter(p::telecom_email.eq(email))
        .select(po::organization_id)
        .order(po::organization_id)
        .load(&mut app.conn())
        .unwrap()
}

/// Every patient row, link and identifier, to compare before and after.
type Everything = (
    Vec<(
        i64,
        String,
        String,
        Option<NaiveDate>,
        Option<String>,
        String,
        NaiveDateTime,
    )>,
    Vec<(i64, i64)>,
    Vec<(i64, String, String)>,
);

fn everything(app: &TestApp) -> Everything {
    let mut c = app.conn();
    let patients = p::table
        .select((
            p::id,
            p::name_family,
            p::name_given,
            p::birth_date,
            p::telecom_phone,
            p::telecom_email,
            p::updated_at,
        ))
        .order(p::id)
        .load(&mut c)
        .unwrap();
    let links = po::table
        .select((po::patient_id, po::organization_id))
        .order((po::patient_id, po::organization_id))
        .load(&mut c)
        .unwrap();
    let idents = pi::table
        .select((pi::patient_id, pi::system, pi::value))
        .order((pi::patient_id, pi::value))
        .load(&mut c)
        .unwrap();
    (patients, links, idents)
}

/// Each patient.import event: (actor user id, organization id, its detail).
fn import_events(app: &TestApp) -> Vec<(Option<i64>, Option<i64>, Value)> {
    let rows: Vec<(Option<i64>, Option<i64>, Option<String>)> = a::table
        .filter(a::action.eq("patient.import"))
        .select((a::actor_user_id, a::organization_id, a::detail))
        .order(a::id)
        .load(&mut app.conn())
        .unwrap();
    rows.into_iter()
        .map(|(who, org, detail)| {
            let detail = detail.expect("the event has a detail");
            (who, org, serde_json::from_str(&detail).unwrap())
        })
        .collect()
}

/// What a member's API list of `org` shows for the keyword `q` ("" for none): the total
/// count, and "Given Family" of each patient on the first page.
async fn listed(app: &TestApp, uid: i64, org: i64, q: &str) -> (i64, Vec<String>) {
    let res = script()
        .get(app.at(&format!("/api/v1/patients?organization_id={org}&q={q}")))
        .bearer_auth(app.token(uid))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let results = body["results"].as_array().expect("results").clone();
    let names = results
        .iter()
        .map(|r| {
            let name = |k: &str| r[k].as_str().unwrap_or("").to_string();
            format!("{} {}", name("nameGiven"), name("nameFamily"))
        })
        .collect();
    (body["count"].as_i64().expect("count"), names)
}

fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

fn stored_as(family: &str, given: &str, birth: Option<NaiveDate>, phone: Option<&str>) -> Stored {
    (
        family.into(),
        given.into(),
        birth,
        phone.map(str::to_string),
    )
}

/// The e-mails written to the data dir's outbox (no SMTP server configured).
fn outbox(app: &TestApp) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(app.data_dir.join("outbox")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// An e-mail with quoted-printable soft line breaks undone.
fn unfolded(message: &str) -> String {
    message.replace("=\r\n", "").replace("=\n", "")
}

/// The path of the invitation link in an e-mail.
fn link_in(message: &str) -> String {
    let text = unfolded(message);
    let start = text.find("/invite/").expect("a link in the message") + "/invite/".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!("/invite/{token}")
}

// ---- reading files ---------------------------------------------------------------------------

on_both_backends!(
    a_spreadsheet_export_with_a_bom_semicolons_and_crlf_keeps_names_exactly_and_counts_lines_past_blanks,
    |app: TestApp| async move {
        let (org, uid) = north(&app);
        let run = import(&app, org, &["--skip-invalid"], "excel_semicolons.csv");
        assert_eq!(run.code, 3, "{run:?}");
        // Two blank lines and a row of bare semicolons are not patients, but count as lines.
        let expected = format!(
            "{}\nline 8, Date of birth: Use a real date written YYYY-MM-DD, such as 1980-04-23.",
            summary(3, 0, 0, 0, 1)
        );
        assert_eq!(run.out.trim_end(), expected, "{run:?}");

        let zoe = stored_as("Åberg-Łukasik", "Zoë", date(1984, 7, 9), None);
        assert_eq!(stored(&app, "zoe@example.org"), Some(zoe));
        let nguyen = stored_as("Nguyễn", "Thị Minh Khai", date(1990, 12, 31), None);
        assert_eq!(
            stored(&app, "nguyen@example.org"),
            Some(nguyen),
            "the e-mail is kept in lower case"
        );
        let sean = stored_as("Ó Briain", "Seán", None, None);
        assert_eq!(stored(&app, "sean@example.org"), Some(sean));
        assert_eq!(stored(&app, "ines@example.org"), None);
        let zoe_user: (String, String) = u::table
            .filter(u::email.eq("zoe@example.org"))
            .select((u::first_name, u::last_name))
            .first(&mut app.conn())
            .unwrap();
        assert_eq!(zoe_user, ("Zoë".to_string(), "Åberg-Łukasik".to_string()));
        assert_eq!(
            identifiers(&app, "zoe@example.org"),
            [("urn:mrn".to_string(), "MRN-1001".to_string())],
            "an MRN column without a system column is an urn:mrn"
        );
        assert!(identifiers(&app, "sean@example.org").is_empty());
        assert_eq!(organizations(&app, "nguyen@example.org"), [org]);
        assert_eq!(counts(&app).patients, 3);

        // The member sees them listed, and finds one by a word of the name without accents.
        let (total, _) = listed(&app, uid, org, "").await;
        assert_eq!(total, 3);
        let (_, found) = listed(&app, uid, org, "lukasik").await;
        assert_eq!(found, ["Zoë Åberg-Łukasik"]);
    }
);

on_both_backends!(
    quoted_fields_keep_delimiters_and_quotes_and_rows_after_a_line_break_are_named_by_their_file_line,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let run = import(&app, org, &["--skip-invalid"], "quoted.csv");
        assert_eq!(run.code, 3, "{run:?}");
        let expected = format!(
            "{}\nline 4, birth_date: Use a real date written YYYY-MM-DD, such as 1980-04-23.\n\
             line 8, email: Enter an e-mail address such as name@example.org.",
            summary(3, 0, 0, 0, 2)
        );
        assert_eq!(run.out.trim_end(), expected, "{run:?}");
        let smith = stored_as("Smith, Jr.", "John Paul", date(1970, 1, 1), None);
        assert_eq!(stored(&app, "smith@example.org"), Some(smith));
        let kay = stored_as("Kay", "Kim, \"KK\"", None, None);
        assert_eq!(stored(&app, "kay@example.org"), Some(kay));
        let obrien = stored_as("O'Brien", "D'Arcy Siobhán", None, None);
        assert_eq!(stored(&app, "obrien@example.org"), Some(obrien));
        assert_eq!(stored(&app, "oneil@example.org"), None);
        assert_eq!(counts(&app).patients, 3);
    }
);

on_both_backends!(
    rows_of_a_file_with_old_mac_line_endings_are_named_by_their_file_line,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let run = import(&app, org, &["--dry-run"], "mac_cr.csv");
        let expected = format!(
            "Dry run: nothing was written.\n{}\n\
             line 3, birth_date: Use a real date written YYYY-MM-DD, such as 1980-04-23.",
            summary(2, 0, 0, 0, 1)
        );
        assert_eq!(run.out.trim_end(), expected, "{run:?}");
    }
);

on_both_backends!(
    files_that_cannot_be_read_are_refused_saying_why_and_nothing_is_written,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let before = counts(&app);
        for (file, said) in [
            (
                "latin1.csv",
                "Line 3 has bytes that are not UTF-8 text. Save the file as \"CSV UTF-8\" and upload it again.",
            ),
            (
                "patients.xlsx",
                "This is not a text file. Export the list as CSV (comma, semicolon or tab separated) and upload that.",
            ),
            (
                "unmapped_headers.csv",
                "The header row has no email, given_name column. Found: \"Patient e-mail\", \"Surname\", \"Notes\". Needed: email, family name and given name;",
            ),
        ] {
            for dry_run in [true, false] {
                let args: &[&str] = if dry_run { &["--dry-run"] } else { &[] };
                let run = import(&app, org, args, file);
                assert_eq!(run.code, 1, "{file}: {run:?}");
                assert!(run.err.contains(said), "{file}: {run:?}");
                assert_eq!(run.out, "", "{file}: no summary for an unread file");
            }
        }
        assert_eq!(counts(&app), before);
    }
);

on_both_backends!(
    a_file_over_the_row_or_size_limit_is_refused_saying_the_limit_and_to_split_it,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let limited = |var: &str, limit: &str| {
            let mut cmd = cohort(&app);
            cmd.env(var, limit)
                .args(["import-patients", "--org", &org.to_string(), "--as", MEMBER])
                .arg(fixture("clean.csv"));
            run(cmd)
        };
        let run = limited("COHORT_IMPORT_MAX_ROWS", "2");
        assert_eq!(run.code, 1, "{run:?}");
        let said =
            "The file has more than 2 rows. Split it into files of at most 2 rows and import each.";
        assert!(run.err.contains(said), "{run:?}");
        assert_eq!(counts(&app).patients, 0);

        let size = std::fs::metadata(fixture("clean.csv")).unwrap().len();
        let run = limited("COHORT_IMPORT_MAX_BYTES", &(size - 1).to_string());
        assert_eq!(run.code, 1, "{run:?}");
        let said = format!(
            "is larger than {} bytes (COHORT_IMPORT_MAX_BYTES); split it into smaller files.",
            size - 1
        );
        assert!(run.err.contains(&said), "{run:?}");
        assert_eq!(counts(&app).patients, 0);

        let run = limited("COHORT_IMPORT_MAX_ROWS", "3");
        assert_eq!(run.code, 0, "exactly at the limit is fine: {run:?}");
        assert_eq!(counts(&app).patients, 3);
    }
);

on_both_backends!(
    a_list_of_thousands_keeps_each_patients_identifier_with_that_patient,
    |app: TestApp| async move {
        let (org, uid) = north(&app);
        let n = 2345;
        let mut text = String::from("email,family_name,given_name,birth_date,identifier\n");
        for i in 0..n {
            let day = i % 28 + 1;
            text.push_str(&format!(
                "p{i:05}@example.org,Family{i},Given{i},1970-01-{day:02},GEN-{i}\n"
            ));
        }
        let file = app.data_dir.join("thousands.csv");
        std::fs::write(&file, text).unwrap();
        let import_all = || {
            let mut cmd = cohort(&app);
            cmd.args(["import-patients", "--org", &org.to_string(), "--as", MEMBER])
                .arg(&file);
            run(cmd)
        };
        let run = import_all();
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.out.trim_end(), summary(n, 0, 0, 0, 0));
        let c = counts(&app);
        assert_eq!((c.patients, c.links, c.identifiers), (2345, 2345, 2345));
        let pairs: Vec<(String, String, String, Option<NaiveDate>)> = pi::table
            .inner_join(p::table)
            .select((p::telecom_email, p::name_family, pi::value, p::birth_date))
            .load(&mut app.conn())
            .unwrap();
        let wrong: Vec<_> = pairs
            .iter()
            .filter(|(email, family, value, birth)| {
                let i: u32 = value.trim_start_matches("GEN-").parse().unwrap();
                *email != format!("p{i:05}@example.org")
                    || *family != format!("Family{i}")
                    || *birth != date(1970, 1, i % 28 + 1)
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{} mixed up, such as {:?}",
            wrong.len(),
            wrong.first()
        );
        let (total, found) = listed(&app, uid, org, "family2000").await;
        assert_eq!(
            (total, found),
            (1, vec!["Given2000 Family2000".to_string()])
        );

        let run = import_all();
        assert_eq!(run.out.trim_end(), summary(0, 0, 0, n, 0), "{run:?}");
        assert_eq!(counts(&app).patients, 2345);
    }
);

// ---- checking rows ---------------------------------------------------------------------------

on_both_backends!(
    a_dry_run_prints_the_summary_and_each_rejected_row_such_as_an_ambiguous_date_and_writes_nothing,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let before = counts(&app);
        let run = import(&app, org, &["--dry-run"], "mixed.csv");
        assert_eq!(run.code, 1, "rows would be rejected: {run:?}");
        let expected = format!(
            "Dry run: nothing was written.\n{}\n\
             line 3, DOB: Use a real date written YYYY-MM-DD, such as 1980-04-23.\n\
             line 4, email: Enter an e-mail address such as name@example.org.",
            summary(2, 0, 0, 0, 2)
        );
        assert_eq!(run.out.trim_end(), expected, "{run:?}");
        assert_eq!(counts(&app), before, "no rows, no audit event");

        let run = import(&app, org, &["--dry-run"], "clean.csv");
        assert_eq!(run.code, 0, "{run:?}");
        let expected = format!("Dry run: nothing was written.\n{}", summary(3, 0, 0, 0, 0));
        assert_eq!(run.out.trim_end(), expected);
        assert_eq!(counts(&app), before);
    }
);

on_both_backends!(
    a_file_with_any_invalid_row_is_refused_whole_listing_the_rows_to_fix,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let before = counts(&app);
        let run = import(&app, org, &[], "mixed.csv");
        assert_eq!(run.code, 1, "{run:?}");
        for said in [
            "line 3, DOB: Use a real date written YYYY-MM-DD, such as 1980-04-23.",
            "line 4, email: Enter an e-mail address such as name@example.org.",
            "2 rows of the file have problems, so nothing was imported.",
        ] {
            assert!(run.err.contains(said), "{said}: {run:?}");
        }
        assert_eq!(counts(&app), before, "not even the valid rows");
        assert_eq!(stored(&app, "fay@example.org"), None);
    }
);

on_both_backends!(
    with_skip_invalid_the_valid_rows_are_imported_the_status_is_3_and_one_audit_event_has_the_counts,
    |app: TestApp| async move {
        let (org, uid) = north(&app);
        let run = import(&app, org, &["--skip-invalid"], "mixed.csv");
        assert_eq!(run.code, 3, "{run:?}");
        assert!(run.out.starts_with(&summary(2, 0, 0, 0, 2)), "{run:?}");
        assert!(run.out.contains("line 3, DOB: "), "{run:?}");
        let fay = stored_as("Fox", "Fay", date(1988, 3, 14), None);
        assert_eq!(stored(&app, "fay@example.org"), Some(fay));
        let ivy = stored_as("Ives", "Ivy", None, None);
        assert_eq!(stored(&app, "ivy@example.org"), Some(ivy));
        assert_eq!(stored(&app, "gus@example.org"), None);
        assert_eq!(counts(&app).patients, 2);
        assert_eq!(organizations(&app, "ivy@example.org"), [org]);

        let events = import_events(&app);
        assert_eq!(events.len(), 1, "{events:?}");
        let (actor, in_org, detail) = &events[0];
        assert_eq!((*actor, *in_org), (Some(uid), Some(org)));
        assert_eq!(
            *detail,
            json!({"created": 2, "added": 0, "updated": 0, "unchanged": 0, "rejected": 2,
                   "studyId": null, "enrolled": 0, "invited": 0})
        );
    }
);

on_both_backends!(
    case_variant_emails_a_repeated_identifier_and_a_practitioners_email_are_rejected_under_their_headers,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let rejected = "line 3, E-mail: ana@x.org is also on line 2: a patient appears once per file.\n\
                        line 4, MRN: urn:mrn A-1 is also on line 2.\n\
                        line 6, E-mail: member@example.org belongs to a practitioner account.";
        let run = import(&app, org, &["--dry-run"], "duplicates.csv");
        assert_eq!(run.code, 1, "{run:?}");
        let expected = format!(
            "Dry run: nothing was written.\n{}\n{rejected}",
            summary(2, 0, 0, 0, 3)
        );
        assert_eq!(run.out.trim_end(), expected, "{run:?}");

        let run = import(&app, org, &["--skip-invalid"], "duplicates.csv");
        assert_eq!(run.code, 3, "{run:?}");
        assert_eq!(
            run.out.trim_end(),
            format!("{}\n{rejected}", summary(2, 0, 0, 0, 3))
        );
        let emails: Vec<String> = p::table
            .select(p::telecom_email)
            .order(p::telecom_email)
            .load(&mut app.conn())
            .unwrap();
        assert_eq!(emails, ["ana@x.org", "cy@x.org"]);
        assert_eq!(
            identifiers(&app, "ana@x.org"),
            [("urn:mrn".to_string(), "A-1".to_string())],
            "the first line wins"
        );
        let practitioner_patients: i64 = p::table
            .filter(p::telecom_email.eq(MEMBER))
            .count()
            .get_result(&mut app.conn())
            .unwrap();
        assert_eq!(practitioner_patients, 0);
    }
);

on_both_backends!(
    an_identifier_already_held_by_another_patient_is_rejected_but_the_same_value_in_another_system_is_not,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        assert_eq!(import(&app, org, &[], "clean.csv").code, 0);
        let run = import(&app, org, &["--dry-run"], "held_identifier.csv");
        assert_eq!(run.code, 1, "{run:?}");
        let expected = format!(
            "Dry run: nothing was written.\n{}\n\
             line 2, identifier: urn:mrn MRN-0002 is already held by another patient.",
            summary(1, 0, 0, 0, 1)
        );
        assert_eq!(run.out.trim_end(), expected, "{run:?}");

        let run = import(&app, org, &["--skip-invalid"], "held_identifier.csv");
        assert_eq!(run.code, 3, "{run:?}");
        assert_eq!(stored(&app, "dora@example.org"), None);
        assert_eq!(
            identifiers(&app, "eli@example.org"),
            [("urn:other".to_string(), "MRN-0002".to_string())]
        );
        assert_eq!(
            identifiers(&app, "bruno.costa@example.org"),
            [("urn:mrn".to_string(), "MRN-0002".to_string())],
            "the holder keeps it"
        );
    }
);

on_both_backends!(
    a_viewer_cannot_import_and_nothing_is_written,
    |app: TestApp| async move {
        let (_, pid) = app.practitioner("viewer@example.org", false);
        let org = app.org("North Clinic", 0, &[(pid, "viewer")]);
        let before = counts(&app);
        let mut cmd = cohort(&app);
        cmd.args(["import-patients", "--org", &org.to_string()])
            .args(["--as", "viewer@example.org"])
            .arg(fixture("clean.csv"));
        let run = run(cmd);
        assert_eq!(run.code, 1, "{run:?}");
        let said = "This needs the member role in this organization; yours is viewer.";
        assert!(run.err.contains(said), "{run:?}");
        assert_eq!(counts(&app), before);
    }
);

// ---- importing again -------------------------------------------------------------------------

on_both_backends!(
    importing_the_same_file_twice_changes_nothing_the_second_time,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let run = import(&app, org, &[], "clean.csv");
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.out.trim_end(), summary(3, 0, 0, 0, 0));
        let ana = stored_as("Silva", "Ana", date(1980, 4, 23), Some("+16175550100"));
        assert_eq!(stored(&app, "ana.silva@example.org"), Some(ana));
        assert_eq!(
            identifiers(&app, "chloe.martin@example.org"),
            [("urn:mrn".to_string(), "MRN-0003".to_string())],
            "an empty system cell means urn:mrn"
        );
        let first = everything(&app);
        let users = counts(&app).users;

        let run = import(&app, org, &[], "clean.csv");
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.out.trim_end(), summary(0, 0, 0, 3, 0));
        assert_eq!(
            everything(&app),
            first,
            "same rows, links, identifiers and times"
        );
        assert_eq!(counts(&app).users, users);
    }
);

on_both_backends!(
    a_changed_name_in_a_reimport_is_updated_and_blank_cells_keep_what_is_on_record,
    |app: TestApp| async move {
        let (org, uid) = north(&app);
        assert_eq!(import(&app, org, &[], "clean.csv").code, 0);
        let bruno = patient_id(&app, "bruno.costa@example.org");
        let before = counts(&app);

        let run = import(&app, org, &[], "clean_renamed.csv");
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.out.trim_end(), summary(0, 0, 1, 2, 0), "{run:?}");
        let renamed = stored_as("Costa-Reis", "Bruno", date(1975, 11, 2), None);
        assert_eq!(stored(&app, "bruno.costa@example.org"), Some(renamed));
        assert_eq!(patient_id(&app, "bruno.costa@example.org"), bruno);
        let ana = stored_as("Silva", "Ana", date(1980, 4, 23), Some("+16175550100"));
        assert_eq!(
            stored(&app, "ana.silva@example.org"),
            Some(ana),
            "blank birth date and phone cells leave them as they were"
        );
        let after = counts(&app);
        assert_eq!(
            (after.patients, after.links, after.identifiers),
            (before.patients, before.links, before.identifiers)
        );
        let (_, found) = listed(&app, uid, org, "reis").await;
        assert_eq!(found, ["Bruno Costa-Reis"]);
    }
);

on_both_backends!(
    a_patient_known_to_another_organization_is_added_to_this_one_not_duplicated,
    |app: TestApp| async move {
        let (north, _) = north(&app);
        let pid = cohort::practitioner::repo::find_by_email(&mut app.conn(), MEMBER)
            .unwrap()
            .unwrap()
            .practitioner_id
            .unwrap();
        let south = app.org("South Clinic", 0, &[(pid, "member")]);
        let walk = study(&app, south, "Walk", Status::Active);
        assert_eq!(import(&app, north, &[], "clean.csv").code, 0);
        let before = everything(&app).0;

        let run = import(&app, south, &["--study", &walk.to_string()], "clean.csv");
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.out.trim_end(), summary(0, 3, 0, 0, 0), "{run:?}");
        assert_eq!(everything(&app).0, before, "the same three patients");
        for email in [
            "ana.silva@example.org",
            "bruno.costa@example.org",
            "chloe.martin@example.org",
        ] {
            assert_eq!(organizations(&app, email), [north, south], "{email}");
        }
        let enrolled: i64 = sp::table
            .filter(sp::study_id.eq(walk))
            .count()
            .get_result(&mut app.conn())
            .unwrap();
        assert_eq!(enrolled, 3, "linked first, so South's study takes them");

        let run = import(&app, south, &[], "clean.csv");
        assert_eq!(run.out.trim_end(), summary(0, 0, 0, 3, 0), "{run:?}");
    }
);

// ---- studies and invitations -----------------------------------------------------------------

on_both_backends!(
    a_study_enrols_every_imported_patient_and_their_emailed_invitations_name_it,
    |app: TestApp| async move {
        let (org, uid) = north(&app);
        let sleep = study(&app, org, "Sleep", Status::Active);
        let run = import(
            &app,
            org,
            &["--study", &sleep.to_string(), "--invite"],
            "clean.csv",
        );
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(
            run.out.trim_end(),
            format!("{}\ninvitations sent: 3", summary(3, 0, 0, 0, 0))
        );
        let mut imported = vec![
            patient_id(&app, "ana.silva@example.org"),
            patient_id(&app, "bruno.costa@example.org"),
            patient_id(&app, "chloe.martin@example.org"),
        ];
        imported.sort();
        let enrolled: Vec<i64> = sp::table
            .filter(sp::study_id.eq(sleep))
            .select(sp::patient_id)
            .order(sp::patient_id)
            .load(&mut app.conn())
            .unwrap();
        assert_eq!(enrolled, imported);

        let mut invited: Vec<(i64, i64, bool, Option<i64>)> = inv::table
            .select((
                inv::patient_id,
                inv::organization_id,
                inv::send_email,
                inv::created_by_user_id,
            ))
            .load(&mut app.conn())
            .unwrap();
        invited.sort();
        let expected: Vec<_> = imported
            .iter()
            .map(|id| (*id, org, true, Some(uid)))
            .collect();
        assert_eq!(invited, expected, "one e-mailed invitation each");

        let mail = outbox(&app);
        assert_eq!(
            mail.len(),
            3,
            "no SMTP server: three messages in the outbox"
        );
        for to in [
            "ana.silva@example.org",
            "bruno.costa@example.org",
            "chloe.martin@example.org",
        ] {
            let message = mail
                .iter()
                .find(|m| m.contains(&format!("To: {to}")))
                .unwrap_or_else(|| panic!("no e-mail to {to}: {mail:?}"));
            assert!(
                unfolded(message).contains("You are enrolled in: Sleep."),
                "{message}"
            );
        }
        let events = import_events(&app);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].2["studyId"], json!(sleep));
        assert_eq!(events[0].2["enrolled"], 3);
        assert_eq!(events[0].2["invited"], 3);
    }
);

on_both_backends!(
    a_paused_study_or_one_of_another_organization_refuses_the_import_and_nothing_is_written,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let paused = study(&app, org, "Diet", Status::Paused);
        let elsewhere = app.org("South Clinic", 0, &[]);
        let theirs = study(&app, elsewhere, "Walk", Status::Active);
        let before = counts(&app);
        let run = import(
            &app,
            org,
            &["--study", &paused.to_string(), "--invite"],
            "clean.csv",
        );
        assert_eq!(run.code, 1, "{run:?}");
        let said = "Diet is paused, so it takes no new enrolments. Set its status to active first.";
        assert!(run.err.contains(said), "{run:?}");
        assert!(!run.out.contains("invitations sent"), "{run:?}");
        assert_eq!(counts(&app), before, "no patients, no invitations");
        assert!(outbox(&app).is_empty());

        let run = import(&app, org, &["--study", &theirs.to_string()], "clean.csv");
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.err.contains("Study not found."), "{run:?}");
        assert_eq!(counts(&app), before);
    }
);

on_both_backends!(
    a_dry_run_with_a_study_that_would_refuse_the_import_says_so_as_the_import_would,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let paused = study(&app, org, "Diet", Status::Paused);
        let run = import(
            &app,
            org,
            &["--dry-run", "--study", &paused.to_string()],
            "clean.csv",
        );
        let said = "Diet is paused, so it takes no new enrolments. Set its status to active first.";
        assert!(
            run.code == 1 && run.err.contains(said),
            "the dry run must not promise an import the real run refuses: {run:?}"
        );
        let run = import(&app, org, &["--dry-run", "--study", "999999"], "clean.csv");
        assert!(
            run.code == 1 && run.err.contains("Study not found."),
            "{run:?}"
        );
        assert_eq!(counts(&app).patients, 0);
    }
);

on_both_backends!(
    invitations_are_emailed_through_smtp_to_every_imported_patient_and_their_links_open,
    |app: TestApp| async move {
        let Some(smtp) = common::fixtures::SmtpServer::start() else {
            return;
        };
        let (org, _) = north(&app);
        let mut cmd = cohort(&app);
        cmd.env("SMTP_URL", smtp.url())
            .args(["import-patients", "--org", &org.to_string(), "--as", MEMBER])
            .args(["--invite", "--skip-invalid"])
            .arg(fixture("excel_semicolons.csv"));
        let run = run(cmd);
        assert_eq!(run.code, 3, "one row rejected: {run:?}");
        assert!(
            run.out.trim_end().ends_with("\ninvitations sent: 3"),
            "{run:?}"
        );
        let third = smtp.wait_for(3, std::time::Duration::from_secs(10));
        assert!(third.is_some(), "three messages arrive");
        let mail = smtp.messages();
        assert_eq!(mail.len(), 3);
        assert!(outbox(&app).is_empty(), "nothing left in the outbox");
        for to in ["zoe@example.org", "nguyen@example.org", "sean@example.org"] {
            let message = mail
                .iter()
                .find(|m| m.contains(&format!("To: {to}")))
                .unwrap_or_else(|| panic!("no e-mail to {to}: {mail:?}"));
            let subject = "Subject: North Clinic invites you to share health data with its studies";
            assert!(message.contains(subject), "{message}");
            let (status, page) = app.get_html(&browser(), &link_in(message)).await;
            assert_eq!(status, 200, "the e-mailed link is the one saved");
            assert!(
                page.text("main")
                    .contains("Your invitation from North Clinic"),
                "{}",
                page.text("main")
            );
        }
    }
);

// ---- the library: per-row outcome ------------------------------------------------------------

on_both_backends!(
    the_outcome_csv_gives_each_row_its_file_line_email_outcome_and_problems,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        assert_eq!(import(&app, org, &[], "clean.csv").code, 0);
        let bytes = std::fs::read(fixture("clean_renamed.csv")).unwrap();
        let renamed = cohort::import::parse::read(&bytes, 100).unwrap();
        let bytes = std::fs::read(fixture("mixed.csv")).unwrap();
        let mixed = cohort::import::parse::read(&bytes, 100).unwrap();
        let mut conn = app.conn();
        let account = cohort::practitioner::repo::find_by_email(&mut conn, MEMBER)
            .unwrap()
            .unwrap();
        let user = cohort::auth::CurrentUser::from_account(account, None, None);
        let scope = cohort::organization::authorize(
            &mut conn,
            &user,
            org,
            cohort::organization::Role::Member,
        )
        .unwrap();
        let today = cohort::util::now().date();

        let preview = cohort::import::check(&mut conn, &scope, &mixed, today).unwrap();
        let rows = outcome_rows(&cohort::import::outcome_csv(&preview));
        assert_eq!(
            rows,
            [
                vec!["line", "email", "outcome", "problems"],
                vec!["2", "fay@example.org", "created", ""],
                vec![
                    "3",
                    "gus@example.org",
                    "rejected",
                    "DOB: Use a real date written YYYY-MM-DD, such as 1980-04-23."
                ],
                vec![
                    "4",
                    "not-an-email",
                    "rejected",
                    "email: Enter an e-mail address such as name@example.org."
                ],
                vec!["5", "ivy@example.org", "created", ""],
            ]
        );

        // The renamed list against what the clean one stored: one updated, two unchanged.
        let preview = cohort::import::check(&mut conn, &scope, &renamed, today).unwrap();
        let rows = outcome_rows(&cohort::import::outcome_csv(&preview));
        assert_eq!(
            rows[1..],
            [
                vec!["2", "ana.silva@example.org", "unchanged", ""],
                vec!["3", "bruno.costa@example.org", "updated", ""],
                vec!["4", "chloe.martin@example.org", "unchanged", ""],
            ]
        );
        assert_eq!(
            cohort::import::summary(&preview),
            [
                ("created", 0),
                ("added to this organization", 0),
                ("updated", 1),
                ("unchanged", 2),
                ("rejected", 0)
            ]
        );
        drop(conn);
        assert_eq!(counts(&app).import_events, 1, "checking writes nothing");
    }
);

/// The records of a CSV text, read back with a CSV reader.
fn outcome_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

on_both_backends!(
    the_outcome_csv_defuses_rejected_values_a_spreadsheet_would_run_as_formulas,
    |app: TestApp| async move {
        let (org, _) = north(&app);
        let bytes = std::fs::read(fixture("formula.csv")).unwrap();
        let table = cohort::import::parse::read(&bytes, 100).unwrap();
        let mut conn = app.conn();
        let account = cohort::practitioner::repo::find_by_email(&mut conn, MEMBER)
            .unwrap()
            .unwrap();
        let user = cohort::auth::CurrentUser::from_account(account, None, None);
        let scope = cohort::organization::authorize(
            &mut conn,
            &user,
            org,
            cohort::organization::Role::Member,
        )
        .unwrap();
        let today = cohort::util::now().date();
        let preview = cohort::import::check(&mut conn, &scope, &table, today).unwrap();
        let rows = outcome_rows(&cohort::import::outcome_csv(&preview));
        let outcomes: Vec<&str> = rows[1..].iter().map(|r| r[2].as_str()).collect();
        assert_eq!(outcomes, ["rejected", "rejected", "created"]);
        assert!(
            rows[1][1].contains("hyperlink"),
            "the value is kept: {rows:?}"
        );
        assert!(
            rows[2][1].contains("sum(1+1)"),
            "the value is kept: {rows:?}"
        );
        let risky: Vec<&String> = rows
            .iter()
            .flatten()
            .filter(|cell| cell.starts_with(['=', '+', '-', '@']))
            .collect();
        assert!(
            risky.is_empty(),
            "cells a spreadsheet runs as formulas (the consent export defuses them): {risky:?}"
        );
    }
);
