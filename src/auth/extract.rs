//! Extractors that say who is calling. Console paths use the session cookie; API and FHIR
//! paths use `Authorization: Bearer`. The answer is cached on the request.

use actix_session::SessionExt;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;

use crate::error::AppError;
use crate::practitioner::model::{Account, User};
use crate::startup::AppState;

#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub user: User,
    pub practitioner_id: Option<i64>,
    pub patient_id: Option<i64>,
    pub ip: Option<String>,
    /// The API token used, when the call came with one.
    pub token_id: Option<i64>,
}

impl CurrentUser {
    pub fn from_account(acc: Account, ip: Option<String>, token_id: Option<i64>) -> CurrentUser {
        CurrentUser {
            user: acc.user,
            practitioner_id: acc.practitioner_id,
            patient_id: acc.patient_id,
            ip,
            token_id,
        }
    }

    pub fn is_superuser(&self) -> bool {
        self.user.is_superuser
    }

    pub fn id(&self) -> i64 {
        self.user.id
    }

    /// The patient this caller is, when it is a patient acting for itself (a patient app's
    /// token) rather than a practitioner.
    pub fn own_patient(&self) -> Option<i64> {
        self.patient_id.filter(|_| self.practitioner_id.is_none())
    }
}

/// What a patient's own token may call: its own records, nothing about anyone else.
pub fn patient_may(path: &str) -> bool {
    const EXACT: [&str; 5] = [
        "/api/v1/users/profile",
        "/api/v1/patients/me",
        "/api/v1/observations",
        "/FHIR/R5",
        "/FHIR/R5/metadata",
    ];
    if EXACT.contains(&path) || path.starts_with("/api/v1/patients/me/") {
        return true;
    }
    if let Some(rest) = path.strip_prefix("/api/v1/patients/") {
        let parts: Vec<&str> = rest.split('/').collect();
        return parts.len() == 2 && parts[1] == "consents";
    }
    if let Some(rest) = path.strip_prefix("/FHIR/R5/") {
        let parts: Vec<&str> = rest.split('/').collect();
        return matches!(
            parts.as_slice(),
            ["Observation"] | ["Observation", _] | ["Device"] | ["Device", _] | ["Patient", _]
        );
    }
    false
}

const PATIENT_ONLY: &str = "A patient's token reaches only that patient's own records: /api/v1/patients/me (with its consents and update requests), its observations, FHIR Observation, Patient/<its id> and Device.";

/// Refuses a patient's token outside `patient_may`.
fn limit_patient(user: &CurrentUser, path: &str) -> Result<(), AppError> {
    if user.own_patient().is_some() && !patient_may(path) {
        return Err(AppError::Forbidden(PATIENT_ONLY.into()));
    }
    Ok(())
}

/// Paths whose callers present tokens rather than cookies.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/FHIR/")
}

/// The address recorded in the audit log: the peer that connected to us.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|a| a.ip().to_string())
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if let Some(u) = req.extensions().get::<CurrentUser>() {
                return Ok(u.clone());
            }
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| AppError::internal("application state missing"))?;
            let ip = client_ip(&req);
            let user = if is_api_path(req.path()) {
                let caller = Bearer::from_req(&req)?;
                let c2 = caller.clone();
                let checked = state
                    .db
                    .quick(move |conn| {
                        super::token::check(conn, &c2.token, c2.ip.clone(), &c2.what)
                    })
                    .await?;
                match checked {
                    super::token::Check::Valid {
                        account,
                        token_id,
                        touch,
                    } => {
                        if touch {
                            state
                                .db
                                .tx(move |conn| super::token::touch(conn, token_id))
                                .await?;
                        }
                        state.audit_queue.push(super::token::use_event(
                            &account,
                            token_id,
                            caller.ip.clone(),
                            &caller.what,
                        ));
                        let user = CurrentUser::from_account(account, caller.ip, Some(token_id));
                        limit_patient(&user, req.path())?;
                        user
                    }
                    super::token::Check::Rejected(event) => {
                        if let Some(event) = event {
                            state.db.tx(move |conn| event.record(conn)).await?;
                        }
                        return Err(AppError::Unauthenticated(BAD_TOKEN.into()));
                    }
                }
            } else {
                let session = req.get_session();
                let next = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let sign_in = || AppError::SignInRequired {
                    next: if req.method() == actix_web::http::Method::GET {
                        next.clone()
                    } else {
                        "/".into()
                    },
                };
                let uid = super::session::user_id(&session, &state.config).ok_or_else(sign_in)?;
                let acc = state
                    .db
                    .run(move |conn| crate::practitioner::repo::find_account(conn, uid))
                    .await?;
                match acc {
                    Some(acc) if acc.user.is_active && acc.practitioner_id.is_some() => {
                        CurrentUser::from_account(acc, ip, None)
                    }
                    _ => {
                        super::session::end(&session);
                        return Err(sign_in());
                    }
                }
            };
            req.extensions_mut().insert(user.clone());
            Ok(user)
        })
    }
}

/// A caller who must be a superuser.
pub struct Superuser(pub CurrentUser);

impl FromRequest for Superuser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            let user = user.await?;
            if user.is_superuser() {
                Ok(Superuser(user))
            } else {
                Err(AppError::Forbidden("Only superusers can do this.".into()))
            }
        })
    }
}

/// An API caller known so far only by its token. `CurrentUser` checks it at once; uploads
/// check it inside their own database call (one trip to the blocking pool instead of two).
#[derive(Clone)]
pub struct Bearer {
    token: String,
    ip: Option<String>,
    what: String,
    path: String,
}

const NO_TOKEN: &str = "Authentication credentials were not provided. Send `Authorization: Bearer <token>`; create a token on your Profile page.";
const BAD_TOKEN: &str =
    "Invalid token: it is unknown, revoked or expired. Create a new one on your Profile page.";

impl FromRequest for Bearer {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Bearer::from_req(req))
    }
}

impl Bearer {
    /// The token the request presents, or the 401 that asks for one.
    pub fn from_req(req: &HttpRequest) -> Result<Bearer, AppError> {
        bearer(req)
            .map(|token| Bearer {
                token,
                ip: client_ip(req),
                what: format!("{} {}", req.method(), req.path()),
                path: req.path().to_string(),
            })
            .ok_or_else(|| AppError::Unauthenticated(NO_TOKEN.into()))
    }

    /// Checks the token and runs `f` for the caller in the same trip to the blocking pool.
    /// That trip only reads: the token's writes (its last-used time once a minute, a refusal's
    /// audit row) go through the write lock afterwards, and the use is queued for the log.
    /// `short`: `f` is a few indexed lookups, so it may run on the calling thread when a
    /// connection is free (see `Db::quick`) instead of taking the trip to the blocking pool.
    pub async fn read<T: Send + 'static>(
        self,
        state: &AppState,
        short: bool,
        f: impl FnOnce(&mut crate::db::DbConnection, &CurrentUser) -> Result<T, AppError>
            + Send
            + 'static,
    ) -> Result<(CurrentUser, T), AppError> {
        let caller = self.clone();
        let work = move |conn: &mut crate::db::DbConnection| match super::token::check(
            conn,
            &caller.token,
            caller.ip.clone(),
            &caller.what,
        )? {
            super::token::Check::Valid {
                account,
                token_id,
                touch,
            } => {
                let event =
                    super::token::use_event(&account, token_id, caller.ip.clone(), &caller.what);
                let user = CurrentUser::from_account(account, caller.ip.clone(), Some(token_id));
                limit_patient(&user, &caller.path)?;
                let out = f(conn, &user)?;
                Ok(Ok((user, event, out, touch.then_some(token_id))))
            }
            super::token::Check::Rejected(event) => Ok(Err(event)),
        };
        let outcome = if short {
            state.db.quick(work).await?
        } else {
            state.db.run(work).await?
        };
        match outcome {
            Ok((user, event, out, touch)) => {
                if let Some(token_id) = touch {
                    state
                        .db
                        .tx(move |conn| super::token::touch(conn, token_id))
                        .await?;
                }
                state.audit_queue.push(event);
                Ok((user, out))
            }
            Err(event) => {
                if let Some(event) = event {
                    state.db.tx(move |conn| event.record(conn)).await?;
                }
                Err(AppError::Unauthenticated(BAD_TOKEN.into()))
            }
        }
    }

    /// The caller, and the audit event of this use for `audit::Queue`; or the refusal, with
    /// its event already recorded (so the caller must commit, then answer 401).
    pub fn authenticate(
        &self,
        conn: &mut crate::db::DbConnection,
    ) -> Result<Result<(CurrentUser, crate::audit::Audit), AppError>, AppError> {
        match super::token::check(conn, &self.token, self.ip.clone(), &self.what)? {
            super::token::Check::Valid {
                account,
                token_id,
                touch,
            } => {
                if touch {
                    super::token::touch(conn, token_id)?;
                }
                let event =
                    super::token::use_event(&account, token_id, self.ip.clone(), &self.what);
                let user = CurrentUser::from_account(account, self.ip.clone(), Some(token_id));
                if let Err(e) = limit_patient(&user, &self.path) {
                    return Ok(Err(e));
                }
                Ok(Ok((user, event)))
            }
            super::token::Check::Rejected(event) => {
                if let Some(event) = event {
                    event.record(conn)?;
                }
                Ok(Err(AppError::Unauthenticated(BAD_TOKEN.into())))
            }
        }
    }
}
