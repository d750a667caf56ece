//! `OrgAccess<R>`: the extractor for routes under an organization (`{org_id}` or `{id}` in the
//! path). It resolves the caller, checks they hold at least role `R` there, and hands the
//! handler the `OrgScope` proof that repository calls require.

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::{authorize, OrgScope, Role};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::startup::AppState;

pub trait MinRole {
    const ROLE: Role;
}
pub struct Viewer;
pub struct Member;
pub struct Manager;
impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Member {
    const ROLE: Role = Role::Member;
}
impl MinRole for Manager {
    const ROLE: Role = Role::Manager;
}

pub struct OrgAccess<R: MinRole> {
    pub user: CurrentUser,
    pub scope: OrgScope,
    _role: PhantomData<R>,
}

impl<R: MinRole + 'static> FromRequest for OrgAccess<R> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        let org_id = req
            .match_info()
            .get("org_id")
            .or_else(|| req.match_info().get("id"))
            .and_then(|v| v.parse::<i64>().ok());
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let user = user.await?;
            let org_id = org_id.ok_or_else(|| AppError::not_found("Organization"))?;
            let state = state.ok_or_else(|| AppError::internal("application state missing"))?;
            let u = user.clone();
            let scope = state
                .db
                .run(move |conn| authorize(conn, &u, org_id, R::ROLE))
                .await?;
            Ok(OrgAccess {
                user,
                scope,
                _role: PhantomData,
            })
        })
    }
}

impl<R: MinRole> OrgAccess<R> {
    /// A weaker view of an already-checked access (a manager is also a viewer).
    pub fn from_parts(user: CurrentUser, scope: OrgScope) -> OrgAccess<R> {
        OrgAccess {
            user,
            scope,
            _role: PhantomData,
        }
    }
}
