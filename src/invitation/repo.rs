//! SQL for invitations. Only a hash of each link's token is stored.

use crate::db::{InIds, InTexts};
use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::invitations;
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::util::{now, random_token, sha256_hex};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = invitations)]
pub struct Invitation {
    pub id: i64,
    pub patient_id: i64,
    pub organization_id: i64,
    pub client_id: Option<i64>,
    pub status: String,
    pub send_email: bool,
    pub created_by_user_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub redeemed_at: Option<NaiveDateTime>,
    pub last_updated: NaiveDateTime,
}

/// Makes a new link for the patient and cancels the ones still open. Returns the new
/// invitation and its token (shown once, never stored).
pub fn issue(
    conn: &mut DbConnection,
    patient_id: i64,
    org_id: i64,
    created_by: Option<i64>,
    send_email: bool,
    days: i64,
    client_id: Option<i64>,
) -> AppResult<(Invitation, String)> {
    let t = now();
    // Only this organization's links: another organization's invitation stays open.
    diesel::update(
        invitations::table
            .filter(invitations::patient_id.eq(patient_id))
            .filter(invitations::organization_id.eq(org_id))
            .filter(invitations::status.in_texts(&["issued", "reissued"])),
    )
    .set((
        invitations::status.eq("cancelled"),
        invitations::last_updated.eq(t),
    ))
    .execute(conn)?;
    let earlier: i64 = invitations::table
        .filter(invitations::patient_id.eq(patient_id))
        .filter(invitations::organization_id.eq(org_id))
        .count()
        .get_result(conn)?;
    let token = random_token(32);
    // Cancelled links still count: any earlier link makes this one a reissue.
    let status = if earlier > 0 { "reissued" } else { "issued" };
    let id: i64 = diesel::insert_into(invitations::table)
        .values((
            invitations::patient_id.eq(patient_id),
            invitations::organization_id.eq(org_id),
            invitations::token_hash.eq(sha256_hex(&token)),
            invitations::status.eq(status),
            invitations::send_email.eq(send_email),
            invitations::client_id.eq(client_id),
            invitations::created_by_user_id.eq(created_by),
            invitations::created_at.eq(t),
            invitations::expires_at.eq(t + Duration::days(days)),
            invitations::last_updated.eq(t),
        ))
        .returning(invitations::id)
        .get_result(conn)?;
    let inv = invitations::table
        .find(id)
        .select(Invitation::as_select())
        .first(conn)?;
    Ok((inv, token))
}

pub fn for_patient(
    conn: &mut DbConnection,
    patient_id: i64,
    org_id: i64,
) -> AppResult<Vec<Invitation>> {
    Ok(invitations::table
        .filter(invitations::patient_id.eq(patient_id))
        .filter(invitations::organization_id.eq(org_id))
        .select(Invitation::as_select())
        .order((invitations::created_at.desc(), invitations::id.desc()))
        .load(conn)?)
}

pub fn find_by_token(conn: &mut DbConnection, token: &str) -> AppResult<Option<Invitation>> {
    Ok(invitations::table
        .filter(invitations::token_hash.eq(sha256_hex(token)))
        .select(Invitation::as_select())
        .first(conn)
        .optional()?)
}

/// The latest invitation from an organization to each of these patients.
pub fn latest_in_org(
    conn: &mut DbConnection,
    org_id: i64,
    patient_ids: &[i64],
) -> AppResult<Vec<Invitation>> {
    let all: Vec<Invitation> = invitations::table
        .filter(invitations::organization_id.eq(org_id))
        .filter(invitations::patient_id.in_ids(patient_ids))
        .select(Invitation::as_select())
        .order((
            invitations::patient_id,
            invitations::created_at.desc(),
            invitations::id.desc(),
        ))
        .load(conn)?;
    let mut out: Vec<Invitation> = Vec::new();
    for inv in all {
        if out.last().is_none_or(|l| l.patient_id != inv.patient_id) {
            out.push(inv);
        }
    }
    Ok(out)
}
