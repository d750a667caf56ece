//! Invitations: the links practitioners send patients. A link carries a random token of
//! which only a hash is kept; it expires (7 days unless configured), and a new link cancels
//! the patient's earlier ones. It can be e-mailed, copied, or printed as a QR code.

pub mod api;
pub mod pages;
pub mod repo;

use chrono::NaiveDateTime;

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::{self, OrgScope, Role};
pub use repo::Invitation;

/// What a person is told about a link, from its stored state and the clock.
pub fn status(inv: &Invitation, now: NaiveDateTime) -> &'static str {
    status_of(&inv.status, inv.expires_at, now)
}

/// `status` from the stored status and expiry alone.
pub fn status_of(stored: &str, expires_at: NaiveDateTime, now: NaiveDateTime) -> &'static str {
    match stored {
        "issued" | "reissued" if expires_at <= now => "expired",
        "issued" => "issued",
        "reissued" => "reissued",
        "redeemed" => "redeemed",
        "cancelled" => "cancelled",
        _ => "expired",
    }
}

/// Where a token leads: Cohort's own page for the patient.
pub fn link(public_url: &str, token: &str) -> String {
    format!("{public_url}/invite/{token}")
}

/// A new invitation for a patient of the scope's organization, with its link.
pub struct Issued {
    pub invitation: Invitation,
    pub link: String,
    pub email: String,
    pub patient_name: String,
    pub organization: String,
    /// The organization's active studies the patient is enrolled in, by name.
    pub studies: Vec<String>,
}

/// A new link for one patient; `client` is the app it leads to (Cohort's own page when None).
#[allow(clippy::too_many_arguments)]
pub fn issue(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    patient_id: i64,
    send_email: bool,
    public_url: &str,
    days: i64,
    client: Option<&crate::portal::oauth::Client>,
) -> Result<Issued, AppError> {
    issue_batch(
        conn,
        user,
        scope,
        &[patient_id],
        (send_email, public_url, days),
        client,
    )?
    .pop()
    .ok_or_else(|| AppError::not_found("Patient"))
}

/// New invitations for those of `patient_ids` the scope's organization holds, in the order
/// given; the others are skipped. What every link needs (the patients, their studies) is read
/// a thousand patients at a time, not one by one.
pub fn issue_many(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    patient_ids: &[i64],
    send_email: bool,
    public_url: &str,
    days: i64,
) -> Result<Vec<Issued>, AppError> {
    issue_batch(
        conn,
        user,
        scope,
        patient_ids,
        (send_email, public_url, days),
        None,
    )
}

fn issue_batch(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    patient_ids: &[i64],
    (send_email, public_url, days): (bool, &str, i64),
    client: Option<&crate::portal::oauth::Client>,
) -> Result<Vec<Issued>, AppError> {
    organization::require(scope, Role::Member)?;
    let client = client.filter(|c| !c.is_default());
    let org = organization::repo::get(conn, scope)?;
    let mut out = Vec::with_capacity(patient_ids.len());
    for chunk in patient_ids.chunks(1000) {
        let linked: std::collections::HashSet<i64> =
            crate::patient::repo::linked_among(conn, chunk, scope.org_id())?
                .into_iter()
                .collect();
        let people: std::collections::HashMap<i64, crate::patient::model::Patient> =
            crate::patient::repo::find_many(conn, chunk)?
                .into_iter()
                .map(|p| (p.id, p))
                .collect();
        let mut studies: std::collections::HashMap<i64, Vec<String>> = Default::default();
        for (pid, name) in crate::study::repo::active_names_among(conn, scope.org_id(), chunk)? {
            studies.entry(pid).or_default().push(name);
        }
        for patient_id in chunk {
            let Some(p) = people
                .get(patient_id)
                .filter(|_| linked.contains(patient_id))
            else {
                continue;
            };
            let (inv, token) = repo::issue(
                conn,
                *patient_id,
                scope.org_id(),
                Some(user.id()),
                send_email,
                days,
                client.map(|c| c.id),
            )?;
            Audit::by(user, "invitation.issue")
                .object("patient", patient_id)
                .org(scope.org_id())
                .detail(serde_json::json!({"invitation": inv.id, "status": inv.status, "email": send_email, "client": client.map(|c| c.client_id.clone())}))
                .record(conn)?;
            out.push(Issued {
                link: match client {
                    Some(c) => c.link(public_url, &token),
                    None => link(public_url, &token),
                },
                invitation: inv,
                email: p.telecom_email.clone(),
                patient_name: format!("{} {}", p.name_given, p.name_family),
                organization: org.name.clone(),
                studies: studies.remove(patient_id).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// The invitation e-mail: a plain-text part and an HTML part, naming the organization and
/// the studies the patient is enrolled in there.
pub fn email_body(issued: &Issued, expires: &str) -> (String, String, String) {
    let subject = format!(
        "{} invites you to share health data with its studies",
        issued.organization
    );
    let studies_text = match issued.studies.as_slice() {
        [] => String::new(),
        names => format!("You are enrolled in: {}.\n\n", names.join(", ")),
    };
    let text = format!(
        "Hello {name},\n\n{org} invites you to take part in its research studies through Cohort.\n\n\
         {studies_text}Open this link to see what the studies ask for and answer:\n{link}\n\n\
         The link is personal and works until {expires}. If you did not expect it, you can ignore this message.\n",
        name = issued.patient_name,
        org = issued.organization,
        link = issued.link,
    );
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let studies_html = match issued.studies.as_slice() {
        [] => String::new(),
        names => format!(
            "<p>You are enrolled in:</p><ul>{}</ul>",
            names
                .iter()
                .map(|n| format!("<li>{}</li>", esc(n)))
                .collect::<String>()
        ),
    };
    let html = format!(
        "<!DOCTYPE html><html><body style=\"font-family: sans-serif; line-height: 1.5\">\
         <p>Hello {name},</p><p><strong>{org}</strong> invites you to take part in its research studies through Cohort.</p>\
         {studies_html}<p><a href=\"{link}\">See what the studies ask for and answer</a></p>\
         <p style=\"color:#555\">The link is personal and works until {expires}. If you did not expect it, you can ignore this message.</p>\
         </body></html>",
        name = esc(&issued.patient_name),
        org = esc(&issued.organization),
        link = esc(&issued.link),
    );
    (subject, text, html)
}

/// E-mails an issued invitation; the error says why it was not delivered.
pub async fn deliver(mail: &crate::mail::Mail, issued: &Issued) -> Result<(), String> {
    let expires = issued.invitation.expires_at.format("%Y-%m-%d").to_string();
    let (subject, text, html) = email_body(issued, &expires);
    mail.send_html(&issued.email, &subject, text, html)
        .await
        .map(|_| ())
}

/// The link as a QR code, in SVG, for printing.
pub fn qr_svg(link: &str) -> Result<String, AppError> {
    let code = qrcode::QrCode::new(link.as_bytes())
        .map_err(|e| AppError::internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_link_past_its_date_reads_as_expired() {
        let t = crate::util::now();
        let inv = Invitation {
            id: 1,
            patient_id: 1,
            organization_id: 1,
            client_id: None,
            status: "issued".into(),
            send_email: false,
            created_by_user_id: None,
            created_at: t,
            expires_at: t,
            redeemed_at: None,
            last_updated: t,
        };
        assert_eq!(status(&inv, t), "expired");
        assert_eq!(status(&inv, t - chrono::Duration::seconds(1)), "issued");
        let used = Invitation {
            status: "redeemed".into(),
            ..inv
        };
        assert_eq!(status(&used, t + chrono::Duration::days(30)), "redeemed");
    }

    #[test]
    fn the_email_names_the_organization_and_each_study_in_both_parts() {
        let t = crate::util::now();
        let issued = Issued {
            invitation: Invitation {
                id: 1,
                patient_id: 1,
                organization_id: 1,
                client_id: None,
                status: "issued".into(),
                send_email: true,
                created_by_user_id: None,
                created_at: t,
                expires_at: t,
                redeemed_at: None,
                last_updated: t,
            },
            link: "http://x/invite/abc".into(),
            email: "ana@example.org".into(),
            patient_name: "Ana Silva".into(),
            organization: "North & Co".into(),
            studies: vec!["Sleep <2026>".into(), "Heart".into()],
        };
        let (subject, text, html) = email_body(&issued, "2026-12-01");
        assert!(subject.starts_with("North & Co invites you"));
        assert!(
            text.contains("You are enrolled in: Sleep <2026>, Heart."),
            "{text}"
        );
        assert!(
            html.contains("<li>Sleep &lt;2026&gt;</li><li>Heart</li>"),
            "{html}"
        );
        assert!(html.contains("<strong>North &amp; Co</strong>"));
        let none = Issued {
            studies: Vec::new(),
            ..issued
        };
        assert!(!email_body(&none, "2026-12-01").1.contains("enrolled in"));
    }

    #[test]
    fn the_qr_code_is_an_svg() {
        let svg = qr_svg("http://127.0.0.1:8080/invite/abc").expect("encodes");
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
