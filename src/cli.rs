//! Command-line verbs for operators and scripts: serve (the default), migrate, create-admin,
//! token create|list|revoke.

use crate::config::Config;
use crate::error::AppError;
use crate::startup::{self, Application};
use crate::{auth, practitioner};

/// Prints a line to standard output. A reader that has gone away (`cohort ... | head -1`)
/// is not an error: the work is done by the time anything is printed.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

const USAGE: &str = "\
Usage: cohort [COMMAND]

Commands:
  serve                                  Serve the console and the API (the default)
  migrate                                Apply database migrations and exit
  create-admin --email E                 Make E a superuser and print a one-time sign-in link
  token create --email E [--label L]     Print a new personal API token for E (last line)
  token list --email E                   List E's tokens
  token revoke ID|TOKEN                  Revoke a token by its id or its text
  seed-demo [--patients N] [--organization ID] [--study] [--observations M]
                                         Add N fake patients (default 1000) to an organization
                                         (default: a new Demo Clinic); --study also makes a
                                         Demo Study with all of them enrolled, decisions and
                                         invitations; --observations M also adds M
                                         readings (heart rate, blood pressure, glucose,
                                         steps) over the past year from those who consented
  import-patients --org ID [--study ID] [--invite] [--dry-run] [--skip-invalid]
                  [--as EMAIL] FILE      Import a CSV patient list into organization ID, as
                                         EMAIL (default: the administrator). Exit status 0:
                                         all imported; 1: nothing written; 3: imported, but
                                         some rows were rejected (--skip-invalid)
  help                                   Show this help

Settings come from the environment or a .env file; see .env.example.";

/// Runs one command line; returns the process exit code.
pub fn main(args: Vec<String>) -> i32 {
    crate::telemetry::init();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["serve"] => serve(),
        ["help"] | ["--help"] | ["-h"] => {
            say!("{USAGE}");
            0
        }
        ["--version"] | ["version"] => {
            say!("cohort {}", env!("CARGO_PKG_VERSION"));
            0
        }
        ["migrate"] => with_db(|_, _| Ok("Migrations are up to date.".to_string())),
        ["create-admin", rest @ ..] => match flag(rest, "--email") {
            Some(email) => create_admin(&email),
            None => usage("create-admin needs --email E"),
        },
        ["token", "create", rest @ ..] => match flag(rest, "--email") {
            Some(email) => token_create(
                &email,
                &flag(rest, "--label").unwrap_or_else(|| "cli".into()),
            ),
            None => usage("token create needs --email E"),
        },
        ["token", "list", rest @ ..] => match flag(rest, "--email") {
            Some(email) => token_list(&email),
            None => usage("token list needs --email E"),
        },
        ["token", "revoke", which] => token_revoke(which),
        ["seed-demo", rest @ ..] => seed_demo(rest),
        ["import-patients", rest @ ..] => import_patients(rest),
        _ => usage(&format!("unknown command: {}", args.join(" "))),
    }
}

fn usage(problem: &str) -> i32 {
    eprintln!("cohort: {problem}\n\n{USAGE}");
    2
}

fn flag(rest: &[&str], name: &str) -> Option<String> {
    let mut it = rest.iter();
    while let Some(w) = it.next() {
        if *w == name {
            return it.next().map(|v| v.to_string());
        }
        if let Some(v) = w.strip_prefix(&format!("{name}=")) {
            return Some(v.to_string());
        }
    }
    None
}

fn load_config() -> Result<Config, String> {
    Config::from_env().map_err(|e| format!("configuration: {e}"))
}

fn serve() -> i32 {
    let config = match load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cohort: {e}");
            return 1;
        }
    };
    actix_web::rt::System::new().block_on(async move {
        let app = match Application::build(config).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("cohort: {e}");
                return 1;
            }
        };
        let url = app.state.config.public_url.clone();
        tracing::info!(%url, "Cohort is serving");
        say!("Cohort is serving at {url}");
        if let Some(link) = &app.admin_link {
            say!(
                "\nFirst run: administrator {} created. Sign in within 15 minutes by opening:\n{link}\n",
                app.state.config.admin_email
            );
        }
        match app.run_until_stopped().await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cohort: server stopped: {e}");
                1
            }
        }
    })
}

/// Connects and migrates, runs `f`, prints its message.
fn with_db(
    f: impl FnOnce(&mut crate::db::DbConnection, &Config) -> Result<String, AppError>,
) -> i32 {
    with_db_status(|conn, config| f(conn, config).map(|m| (m, 0)))
}

/// `with_db` for commands whose success has more than one exit status.
fn with_db_status(
    f: impl FnOnce(&mut crate::db::DbConnection, &Config) -> Result<(String, i32), AppError>,
) -> i32 {
    let mut config = match load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cohort: {e}");
            return 1;
        }
    };
    let pool = match startup::prepare_for_command(&mut config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cohort: {e}");
            return 1;
        }
    };
    let mut conn = match pool.get() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cohort: DATABASE_URL: {e}");
            return 1;
        }
    };
    match f(&mut conn, &config) {
        Ok((msg, status)) => {
            say!("{msg}");
            status
        }
        // An operator at a terminal gets the cause itself, not the console's apology.
        Err(AppError::Internal(cause)) => {
            eprintln!("cohort: failed: {cause}");
            1
        }
        Err(e) => {
            eprintln!("cohort: {}", e.user_message());
            1
        }
    }
}

fn create_admin(email: &str) -> i32 {
    let email = crate::util::normalize_email(email);
    if !crate::util::looks_like_email(&email) {
        return usage("--email needs an e-mail address such as admin@example.org");
    }
    with_db(|conn, config| {
        let user_id = practitioner::ensure_admin(conn, &email)?;
        let secret = auth::code::create_link(conn, user_id)?;
        Ok(format!(
            "{email} is a superuser. Sign in within {} minutes by opening:\n{}",
            auth::code::LINK_MINUTES,
            config.url(&format!("/auth/link/{secret}"))
        ))
    })
}

fn token_create(email: &str, label: &str) -> i32 {
    with_db(|conn, _| {
        let acc = practitioner::repo::find_by_email(conn, email)?
            .ok_or_else(|| AppError::NotFound(format!("No user with the e-mail {email}.")))?;
        let (id, secret) = auth::token::create(conn, acc.user.id, label, "personal")?;
        crate::audit::Audit::system("token.create")
            .object("api_token", id)
            .detail(serde_json::json!({"email": acc.user.email, "label": label, "via": "cli"}))
            .record(conn)?;
        eprintln!(
            "Created token {id} ({label}) for {}. It is shown once:",
            acc.user.email
        );
        Ok(secret)
    })
}

fn token_list(email: &str) -> i32 {
    with_db(|conn, _| {
        let tokens = auth::token::list_for_email(conn, email)?;
        if tokens.is_empty() {
            return Ok(format!("{email} has no tokens."));
        }
        let fmt = |t: Option<chrono::NaiveDateTime>| {
            t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "-".into())
        };
        let mut out = String::from("id\tlabel\tprefix\tcreated\tlast used\trevoked");
        for t in tokens {
            out.push_str(&format!(
                "\n{}\t{}\t{}…\t{}\t{}\t{}",
                t.id,
                t.label,
                t.token_prefix,
                t.created_at.format("%Y-%m-%d %H:%M"),
                fmt(t.last_used_at),
                fmt(t.revoked_at)
            ));
        }
        Ok(out)
    })
}

fn token_revoke(which: &str) -> i32 {
    with_db(|conn, _| match auth::token::revoke_any(conn, which)? {
        Some((id, email)) => {
            crate::audit::Audit::system("token.revoke")
                .object("api_token", id)
                .detail(serde_json::json!({"email": email, "via": "cli"}))
                .record(conn)?;
            Ok(format!("Revoked token {id} of {email}."))
        }
        None => Err(AppError::NotFound("No such token.".into())),
    })
}

fn seed_demo(rest: &[&str]) -> i32 {
    let count = match flag(rest, "--patients").map(|v| v.parse::<i64>()) {
        None => 1000,
        Some(Ok(n)) if (1..=10_000_000).contains(&n) => n,
        Some(_) => return usage("--patients takes a whole number from 1 to 10000000"),
    };
    let org = match flag(rest, "--organization").map(|v| v.parse::<i64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return usage("--organization takes an organization id"),
    };
    let observations = match flag(rest, "--observations").map(|v| v.parse::<i64>()) {
        None => 0,
        Some(Ok(n)) if (0..=100_000_000).contains(&n) => n,
        Some(_) => return usage("--observations takes a whole number from 0 to 100000000"),
    };
    // Observations come from the demo study's consents.
    let study = rest.contains(&"--study") || observations > 0;
    with_db(|conn, _| {
        let mut last = std::time::Instant::now();
        let (org_id, secs) = crate::demo::seed(conn, org, count, |done| {
            if last.elapsed().as_secs() >= 5 {
                eprintln!("  {done} patients…");
                last = std::time::Instant::now();
            }
        })?;
        let mut out = format!(
            "Added {count} patients to organization {org_id} in {secs:.1} s ({:.0} patients/s).",
            count as f64 / secs.max(1e-9)
        );
        if study {
            let (study_id, secs) = crate::demo::seed_study(conn, org_id)?;
            out.push_str(&format!(
                "\nMade study {study_id} with every patient of organization {org_id} enrolled, in {secs:.1} s."
            ));
            if observations > 0 {
                let mut last = std::time::Instant::now();
                let secs = crate::demo::observations::seed(conn, study_id, observations, |done| {
                    if last.elapsed().as_secs() >= 5 {
                        eprintln!("  {done} observations…");
                        last = std::time::Instant::now();
                    }
                })?;
                out.push_str(&format!(
                    "\nAdded {observations} observations to study {study_id} in {secs:.1} s ({:.0} observations/s).",
                    observations as f64 / secs.max(1e-9)
                ));
            }
        }
        Ok(out)
    })
}

fn import_patients(rest: &[&str]) -> i32 {
    let Some(Ok(org_id)) = flag(rest, "--org").map(|v| v.parse::<i64>()) else {
        return usage("import-patients needs --org ID (a whole number)");
    };
    let study_id = match flag(rest, "--study").map(|v| v.parse::<i64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return usage("--study takes a study id"),
    };
    let takes_value = ["--org", "--study", "--as"];
    let mut file = None;
    let mut it = rest.iter();
    while let Some(w) = it.next() {
        if takes_value.contains(w) {
            it.next();
        } else if !w.starts_with("--") {
            file = Some(w.to_string());
        }
    }
    let Some(file) = file else {
        return usage("import-patients needs the CSV file to read");
    };
    let (invite, dry_run, skip_invalid) = (
        rest.contains(&"--invite"),
        rest.contains(&"--dry-run"),
        rest.contains(&"--skip-invalid"),
    );
    let as_email = flag(rest, "--as");
    let mut issued = Vec::new();
    let status = with_db_status(|conn, config| {
        let bytes = std::fs::read(&file)
            .map_err(|e| AppError::BadRequest(format!("{file} cannot be read: {e}")))?;
        if bytes.len() as i64 > config.import_max_bytes {
            return Err(AppError::BadRequest(format!(
                "{file} is larger than {} bytes (COHORT_IMPORT_MAX_BYTES); split it into smaller files.",
                config.import_max_bytes
            )));
        }
        let table = crate::import::parse::read(&bytes, config.import_max_rows as usize)
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        // This process reads a large share of the database once. Through SQLite's page
        // cache its memory stays bounded; mapped, every page it touched would stay resident.
        // Statement journals in memory, as on the server's writer (see `db::writer`): the
        // import is one transaction without savepoints, so each is emptied as its statement
        // ends.
        if let crate::db::DbConnection::Sqlite(c) = conn {
            diesel::connection::SimpleConnection::batch_execute(
                c,
                "PRAGMA mmap_size = 0; PRAGMA temp_store = MEMORY",
            )?;
        }
        let email = as_email
            .clone()
            .unwrap_or_else(|| config.admin_email.clone());
        let acc = practitioner::repo::find_by_email(conn, &email)?
            .ok_or_else(|| AppError::BadRequest(format!("No user with the e-mail {email}.")))?;
        let user = auth::CurrentUser::from_account(acc, None, None);
        let today = crate::util::now().date();
        let opts = crate::import::Options {
            skip_invalid,
            study_id,
            invite: invite.then(|| (config.public_url.clone(), config.invitation_days)),
        };
        let run = |conn: &mut crate::db::DbConnection| -> Result<crate::import::Preview, AppError> {
            let scope = crate::organization::authorize(
                conn,
                &user,
                org_id,
                crate::organization::Role::Member,
            )?;
            if dry_run {
                crate::import::check_study(conn, &scope, &opts)?;
                return crate::import::check(conn, &scope, &table, today);
            }
            let report =
                crate::import::commit(conn, &user, &scope, &table, &opts, today, &mut |_, _| {})?;
            issued = report.invitations;
            Ok(report.preview)
        };
        let preview = match diesel::Connection::transaction(conn, run) {
            Ok(p) => p,
            // Refused for invalid rows: list them before the reason.
            Err(AppError::BadRequest(why)) if !dry_run => {
                let scope = crate::organization::authorize(
                    conn,
                    &user,
                    org_id,
                    crate::organization::Role::Member,
                )?;
                let p = crate::import::check(conn, &scope, &table, today)?;
                return Err(AppError::BadRequest(format!("{}{why}", rejected_lines(&p))));
            }
            Err(e) => return Err(e),
        };
        let rejected = preview.invalid().len();
        let mut out = String::new();
        if dry_run {
            out.push_str("Dry run: nothing was written.\n");
        }
        for (label, n) in crate::import::summary(&preview) {
            out.push_str(&format!("{label}: {n}\n"));
        }
        out.push_str(&rejected_lines(&preview));
        let status = if rejected == 0 {
            0
        } else if dry_run || !skip_invalid || rejected == preview.rows.len() {
            // Nothing (or nothing at all) was imported.
            1
        } else {
            3
        };
        Ok((out.trim_end().to_string(), status))
    });
    if issued.is_empty() {
        return status;
    }
    let config = match load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cohort: {e}");
            return 1;
        }
    };
    let sent = actix_web::rt::System::new().block_on(async move {
        let mail = match crate::mail::Mail::new(
            config.smtp_url.as_deref(),
            &config.mail_from,
            &config.data_dir,
        ) {
            Ok(m) => m,
            Err(e) => return Err(e),
        };
        let mut failed = Vec::new();
        for i in &issued {
            if let Err(why) = crate::invitation::deliver(&mail, i).await {
                failed.push(format!("{} ({why})", i.email));
            }
        }
        Ok((issued.len(), failed))
    });
    match sent {
        Ok((n, failed)) if failed.is_empty() => {
            say!("invitations sent: {n}");
            status
        }
        Ok((n, failed)) => {
            say!(
                "invitations sent: {}; not delivered: {}",
                n - failed.len(),
                failed.join(", ")
            );
            if status == 0 {
                3
            } else {
                status
            }
        }
        Err(e) => {
            eprintln!("cohort: invitations were issued but not sent: {e}");
            if status == 0 {
                3
            } else {
                status
            }
        }
    }
}

/// "line 7, email: ..." for each rejected row.
fn rejected_lines(p: &crate::import::Preview) -> String {
    let mut out = String::new();
    for r in p.invalid() {
        if let Err(problems) = &r.outcome {
            for pr in problems {
                out.push_str(&format!("line {}, {}: {}\n", r.line, pr.column, pr.message));
            }
        }
    }
    out
}
