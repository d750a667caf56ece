//! The app connection, as JupyterHealth Exchange does it: the app redeems the invitation
//! (`POST /api/v1/invitation/{token}`, no auth) for a one-time authorization code, then
//! trades the code at `POST /o/token/` with PKCE, the verifier being the unpadded base64url
//! of the link token, for a patient token. Refresh tokens renew it. Only hashes are stored.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::Audit;
use crate::db::schema::{api_tokens, clients, invitations, oauth_grants, patients};
use crate::db::{DbConnection, InTexts};
use crate::error::{AppError, AppResult};
use crate::startup::AppState;
use crate::util::{constant_time_eq, now, random_token, sha256_hex};

/// Cohort's own invitation page, the client of links that name no other.
pub const DEFAULT_CLIENT: &str = "cohort";
/// How long an authorization code may wait to be exchanged.
pub const CODE_MINUTES: i64 = 10;
/// How long a patient token works before the app must refresh it.
pub const ACCESS_DAYS: i64 = 30;
/// How long a refresh token works (each use gives a new one).
pub const REFRESH_DAYS: i64 = 180;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/o/token/", web::post().to(token))
        .route("/o/token", web::post().to(token));
}

/// Routes under /api/v1.
pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/invitation/{token}", web::post().to(redeem));
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = clients)]
pub struct Client {
    pub id: i64,
    pub name: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub invitation_url_template: String,
    pub created_at: NaiveDateTime,
}

impl Client {
    pub fn is_default(&self) -> bool {
        self.client_id == DEFAULT_CLIENT
    }

    /// The link a patient opens for this client: its template with the token for `CODE`.
    pub fn link(&self, public_url: &str, token: &str) -> String {
        absolute(public_url, &self.invitation_url_template).replace("CODE", token)
    }
}

/// Completes an address stored relative to the server (Cohort's own client).
pub fn absolute(public_url: &str, s: &str) -> String {
    if s.starts_with('/') {
        format!("{public_url}{s}")
    } else {
        s.to_string()
    }
}

pub fn clients(conn: &mut DbConnection) -> AppResult<Vec<Client>> {
    Ok(clients::table
        .select(Client::as_select())
        .order((clients::name, clients::id))
        .load(conn)?)
}

pub fn find_client(conn: &mut DbConnection, id: i64) -> AppResult<Option<Client>> {
    Ok(clients::table
        .find(id)
        .select(Client::as_select())
        .first(conn)
        .optional()?)
}

/// A client named by its number or by its OAuth `client_id`.
pub fn find_client_by(conn: &mut DbConnection, key: &str) -> AppResult<Option<Client>> {
    let key = key.trim();
    if let Ok(id) = key.parse::<i64>() {
        if let Some(c) = find_client(conn, id)? {
            return Ok(Some(c));
        }
    }
    Ok(clients::table
        .filter(clients::client_id.eq(key))
        .select(Client::as_select())
        .first(conn)
        .optional()?)
}

pub fn default_client(conn: &mut DbConnection) -> AppResult<Client> {
    find_client_by(conn, DEFAULT_CLIENT)?
        .ok_or_else(|| AppError::internal("the default client is missing; run the migrations"))
}

/// What PKCE expects from an app holding `token`: the verifier, and its S256 challenge.
pub fn verifier_of(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(token.as_bytes())
}

pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Redeems an invitation for a one-time code. 404 unknown, 410 expired, 403 cancelled,
/// 409 already used; two apps racing for one link: one wins, the other gets 409.
fn redeem_in(
    conn: &mut DbConnection,
    token: &str,
    public_url: &str,
    ip: Option<String>,
) -> Result<serde_json::Value, AppError> {
    let inv = crate::invitation::repo::find_by_token(conn, token)?.ok_or_else(|| {
        AppError::NotFound(
            "No invitation has this code. Check that the app received the whole link.".into(),
        )
    })?;
    let t = now();
    match crate::invitation::status(&inv, t) {
        "expired" => {
            return Err(AppError::Gone(format!(
                "This invitation expired on {}; ask the study team for a new one.",
                inv.expires_at.format("%Y-%m-%d")
            )))
        }
        "cancelled" => {
            return Err(AppError::Forbidden(
                "This invitation was cancelled: a newer link replaced it. Use the most recent invitation."
                    .into(),
            ))
        }
        "redeemed" => return Err(AppError::Conflict(used_message())),
        _ => {}
    }
    let won = diesel::update(
        invitations::table
            .find(inv.id)
            .filter(invitations::status.in_texts(&["issued", "reissued"])),
    )
    .set((
        invitations::status.eq("redeemed"),
        invitations::redeemed_at.eq(Some(t)),
        invitations::last_updated.eq(t),
    ))
    .execute(conn)?;
    if won != 1 {
        return Err(AppError::Conflict(used_message()));
    }
    let client = match inv.client_id {
        Some(id) => find_client(conn, id)?,
        None => None,
    };
    let client = match client {
        Some(c) => c,
        None => default_client(conn)?,
    };
    let (user_id, email): (i64, String) = patients::table
        .find(inv.patient_id)
        .select((patients::user_id, patients::telecom_email))
        .first(conn)?;
    let code = random_token(32);
    let expires = t + Duration::minutes(CODE_MINUTES);
    let redirect_uri = absolute(public_url, &client.redirect_uri);
    diesel::insert_into(oauth_grants::table)
        .values((
            oauth_grants::kind.eq("code"),
            oauth_grants::secret_hash.eq(sha256_hex(&code)),
            oauth_grants::client_id.eq(client.id),
            oauth_grants::user_id.eq(user_id),
            oauth_grants::invitation_id.eq(Some(inv.id)),
            oauth_grants::code_challenge.eq(Some(challenge_of(&verifier_of(token)))),
            oauth_grants::redirect_uri.eq(&redirect_uri),
            oauth_grants::created_at.eq(t),
            oauth_grants::expires_at.eq(expires),
        ))
        .execute(conn)?;
    Audit::anonymous("invitation.redeem", Some(&email), ip)
        .user_id(user_id, &email)
        .object("patient", inv.patient_id)
        .org(inv.organization_id)
        .detail(json!({"invitation": inv.id, "client": client.client_id}))
        .record(conn)?;
    Ok(json!({
        "grant": {
            "grant_type": "authorization_code",
            "redirect_uri": redirect_uri,
            "client_id": client.client_id,
            "code": code,
        },
        "token_endpoint": format!("{public_url}/o/token/"),
        "expires": crate::util::rfc3339(expires),
    }))
}

fn used_message() -> String {
    "This invitation was already used to connect an app. Ask the study team for a new link to connect another.".into()
}

async fn redeem(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let url = state.config.public_url.clone();
    let ip = crate::auth::client_ip(&req);
    let body = state
        .db
        .tx(move |conn| redeem_in(conn, &token, &url, ip))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body))
}

/// An OAuth error (RFC 6749 section 5.2).
struct OAuthError {
    status: u16,
    error: &'static str,
    description: String,
}

fn invalid_grant(description: impl Into<String>) -> OAuthError {
    OAuthError {
        status: 400,
        error: "invalid_grant",
        description: description.into(),
    }
}

fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError {
        status: 400,
        error: "invalid_request",
        description: description.into(),
    }
}

impl OAuthError {
    fn response(&self) -> HttpResponse {
        HttpResponse::build(
            actix_web::http::StatusCode::from_u16(self.status)
                .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
        )
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"error": self.error, "error_description": self.description}))
    }
}

struct Grant {
    id: i64,
    client_id: i64,
    user_id: i64,
    code_challenge: Option<String>,
    redirect_uri: String,
    expires_at: NaiveDateTime,
    used_at: Option<NaiveDateTime>,
    api_token_id: Option<i64>,
}

fn find_grant(conn: &mut DbConnection, kind: &str, secret: &str) -> AppResult<Option<Grant>> {
    type Row = (
        i64,
        i64,
        i64,
        Option<String>,
        String,
        NaiveDateTime,
        Option<NaiveDateTime>,
        Option<i64>,
    );
    let row: Option<Row> = oauth_grants::table
        .filter(oauth_grants::kind.eq(kind))
        .filter(oauth_grants::secret_hash.eq(sha256_hex(secret)))
        .select((
            oauth_grants::id,
            oauth_grants::client_id,
            oauth_grants::user_id,
            oauth_grants::code_challenge,
            oauth_grants::redirect_uri,
            oauth_grants::expires_at,
            oauth_grants::used_at,
            oauth_grants::api_token_id,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(
        |(
            id,
            client_id,
            user_id,
            code_challenge,
            redirect_uri,
            expires_at,
            used_at,
            api_token_id,
        )| {
            Grant {
                id,
                client_id,
                user_id,
                code_challenge,
                redirect_uri,
                expires_at,
                used_at,
                api_token_id,
            }
        },
    ))
}

/// Marks a grant used; false when another request used it first.
fn use_grant(conn: &mut DbConnection, id: i64) -> AppResult<bool> {
    Ok(diesel::update(
        oauth_grants::table
            .find(id)
            .filter(oauth_grants::used_at.is_null()),
    )
    .set(oauth_grants::used_at.eq(Some(now())))
    .execute(conn)?
        == 1)
}

/// A new patient token and refresh token for the grant's holder.
fn issue_tokens(
    conn: &mut DbConnection,
    client: &Client,
    user_id: i64,
    ip: Option<String>,
    why: &str,
) -> AppResult<serde_json::Value> {
    let t = now();
    let (token_id, access) =
        crate::auth::token::create(conn, user_id, &format!("{} app", client.name), "patient")?;
    diesel::update(api_tokens::table.find(token_id))
        .set(api_tokens::expires_at.eq(Some(t + Duration::days(ACCESS_DAYS))))
        .execute(conn)?;
    let refresh = random_token(32);
    diesel::insert_into(oauth_grants::table)
        .values((
            oauth_grants::kind.eq("refresh"),
            oauth_grants::secret_hash.eq(sha256_hex(&refresh)),
            oauth_grants::client_id.eq(client.id),
            oauth_grants::user_id.eq(user_id),
            oauth_grants::redirect_uri.eq(""),
            oauth_grants::api_token_id.eq(Some(token_id)),
            oauth_grants::created_at.eq(t),
            oauth_grants::expires_at.eq(t + Duration::days(REFRESH_DAYS)),
        ))
        .execute(conn)?;
    let email: String = crate::db::schema::users::table
        .find(user_id)
        .select(crate::db::schema::users::email)
        .first(conn)?;
    Audit::anonymous(why, Some(&email), ip)
        .user_id(user_id, &email)
        .object("api_token", token_id)
        .detail(json!({"client": client.client_id}))
        .record(conn)?;
    Ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_DAYS * 86_400,
        "refresh_token": refresh,
        "scope": "patient",
    }))
}

type Form = Vec<(String, String)>;

fn get<'a>(form: &'a Form, key: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn exchange(
    conn: &mut DbConnection,
    form: &Form,
    ip: Option<String>,
) -> AppResult<Result<serde_json::Value, OAuthError>> {
    let Some(client_key) = get(form, "client_id") else {
        return Ok(Err(invalid_request(
            "Send client_id, the client_id given in the invitation's grant.",
        )));
    };
    let Some(client) = find_client_by(conn, client_key)? else {
        return Ok(Err(OAuthError {
            status: 401,
            error: "invalid_client",
            description: format!("No app is registered with client_id {client_key}."),
        }));
    };
    match get(form, "grant_type") {
        Some("authorization_code") => {
            let Some(code) = get(form, "code") else {
                return Ok(Err(invalid_request(
                    "Send code, the code from the invitation's grant.",
                )));
            };
            let Some(verifier) = get(form, "code_verifier") else {
                return Ok(Err(invalid_request("Send code_verifier: the unpadded base64url encoding of the invitation link's token.")));
            };
            let Some(g) = find_grant(conn, "code", code)? else {
                return Ok(Err(invalid_grant("This code is unknown. Redeem the invitation again for a new one, or ask the study team for a new link.")));
            };
            if g.used_at.is_some() {
                return Ok(Err(invalid_grant(
                    "This code was already exchanged; each code works once.",
                )));
            }
            if g.expires_at <= now() {
                return Ok(Err(invalid_grant(format!("This code expired: exchange it within {CODE_MINUTES} minutes of redeeming the invitation."))));
            }
            if g.client_id != client.id {
                return Ok(Err(invalid_grant(
                    "This code was issued to another app (client_id differs).",
                )));
            }
            if let Some(uri) = get(form, "redirect_uri") {
                if uri != g.redirect_uri {
                    return Ok(Err(invalid_grant(format!(
                        "redirect_uri must be the one in the grant: {}.",
                        g.redirect_uri
                    ))));
                }
            }
            let expected = g.code_challenge.clone().unwrap_or_default();
            if !constant_time_eq(&challenge_of(verifier), &expected) {
                return Ok(Err(invalid_grant("code_verifier does not match: send the unpadded base64url encoding of the invitation link's token.")));
            }
            if !use_grant(conn, g.id)? {
                return Ok(Err(invalid_grant(
                    "This code was already exchanged; each code works once.",
                )));
            }
            Ok(Ok(issue_tokens(
                conn,
                &client,
                g.user_id,
                ip,
                "app.connect",
            )?))
        }
        Some("refresh_token") => {
            let Some(secret) = get(form, "refresh_token") else {
                return Ok(Err(invalid_request("Send refresh_token.")));
            };
            let Some(g) = find_grant(conn, "refresh", secret)? else {
                return Ok(Err(invalid_grant(
                    "This refresh token is unknown or was revoked.",
                )));
            };
            if g.used_at.is_some() || g.expires_at <= now() {
                return Ok(Err(invalid_grant("This refresh token was already used or has expired; connect the app again with a new invitation.")));
            }
            if g.client_id != client.id {
                return Ok(Err(invalid_grant(
                    "This refresh token belongs to another app (client_id differs).",
                )));
            }
            if !use_grant(conn, g.id)? {
                return Ok(Err(invalid_grant("This refresh token was already used.")));
            }
            // The token it renewed stops working: one live token per connection.
            if let Some(old) = g.api_token_id {
                diesel::update(
                    api_tokens::table
                        .find(old)
                        .filter(api_tokens::revoked_at.is_null()),
                )
                .set(api_tokens::revoked_at.eq(Some(now())))
                .execute(conn)?;
            }
            Ok(Ok(issue_tokens(
                conn,
                &client,
                g.user_id,
                ip,
                "app.refresh",
            )?))
        }
        Some(other) => Ok(Err(OAuthError {
            status: 400,
            error: "unsupported_grant_type",
            description: format!(
                "grant_type {other} is not supported; use authorization_code or refresh_token."
            ),
        })),
        None => Ok(Err(invalid_request(
            "Send grant_type=authorization_code (or refresh_token), form-encoded.",
        ))),
    }
}

async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let Ok(form) = serde_urlencoded::from_bytes::<Form>(&body) else {
        return Ok(invalid_request(
            "Send the request form-encoded (application/x-www-form-urlencoded).",
        )
        .response());
    };
    let ip = crate::auth::client_ip(&req);
    let out = state.db.tx(move |conn| exchange(conn, &form, ip)).await?;
    Ok(match out {
        Ok(body) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(body),
        Err(e) => e.response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_pair_follows_rfc_7636() {
        // RFC 7636 appendix B: this verifier has this S256 challenge.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(verifier_of("ab?"), "YWI_");
    }

    #[test]
    fn relative_client_addresses_get_the_public_url() {
        assert_eq!(absolute("http://x", "/invite/CODE"), "http://x/invite/CODE");
        assert_eq!(absolute("http://x", "app://open"), "app://open");
    }
}
