//! The console's entry points: `/`, the health check, and the organization selection every
//! tab shares (remembered per practitioner across tabs and sign-ins).

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;

use super::Console;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::{AppError, AppResult};
use crate::organization::{self, Organization, Role};
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index));
}

pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    state
        .db
        .run(|conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
        .await?;
    Ok(HttpResponse::Ok().content_type("text/plain").body("ok"))
}

async fn index(_c: Console) -> HttpResponse {
    super::see_other("/organizations")
}

/// The chosen organization with the caller's role there, and the choices to offer.
pub type Selection = (Option<(Organization, Role)>, Vec<OrgOption>);

/// One choice in an organization selector.
pub struct OrgOption {
    pub id: i64,
    pub label: String,
    pub selected: bool,
}

/// The organization a tab shows: the one asked for (then remembered), else the remembered
/// one, else the first the practitioner can see.
pub fn selected_organization(
    conn: &mut DbConnection,
    user: &CurrentUser,
    requested: Option<i64>,
) -> AppResult<Selection> {
    let (all, roles) = organization::visible(conn, user)?;
    let tree = organization::build_tree(&all, &roles);
    let mut flat = Vec::new();
    fn walk(
        nodes: &[organization::TreeNode],
        depth: usize,
        out: &mut Vec<(Organization, Role, usize)>,
    ) {
        for n in nodes {
            out.push((n.org.clone(), n.role, depth));
            walk(&n.children, depth + 1, out);
        }
    }
    walk(&tree, 0, &mut flat);
    let pick = |id: Option<i64>| id.and_then(|id| flat.iter().find(|(o, _, _)| o.id == id));
    let chosen = match pick(requested) {
        Some(found) => {
            if user.user.selected_organization_id != Some(found.0.id) {
                crate::practitioner::repo::set_selected_organization(
                    conn,
                    user.id(),
                    Some(found.0.id),
                )?;
            }
            Some(found)
        }
        None => pick(user.user.selected_organization_id).or(flat.first()),
    };
    let chosen_id = chosen.map(|(o, _, _)| o.id);
    let options = flat
        .iter()
        .map(|(o, _, depth)| OrgOption {
            id: o.id,
            label: format!("{}{}", "— ".repeat(*depth), o.name),
            selected: Some(o.id) == chosen_id,
        })
        .collect();
    Ok((chosen.map(|(o, r, _)| (o.clone(), *r)), options))
}

#[derive(Deserialize)]
pub struct OrgQuery {
    #[serde(alias = "organizationId")]
    pub organization_id: Option<String>,
}

impl OrgQuery {
    pub fn id(&self) -> Option<i64> {
        self.organization_id.as_deref().and_then(|s| s.parse().ok())
    }
}
