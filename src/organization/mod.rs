//! Organizations: the tree, the roles practitioners hold in it, and who may do what.

pub mod access;
pub mod api;
pub mod model;
pub mod pages;
pub mod repo;

use std::collections::BTreeMap;

use crate::error::{AppError, FieldErrors};
pub use model::Organization;

/// The implicit root every top-level organization hangs from (`partOf: 0`).
pub const ROOT_ID: i64 = 0;

/// FHIR organization-type codes, with the names people read.
pub const ORG_TYPES: &[(&str, &str)] = &[
    ("prov", "Healthcare provider"),
    ("dept", "Hospital department"),
    ("team", "Organizational team"),
    ("govt", "Government"),
    ("ins", "Insurance company"),
    ("pay", "Payer"),
    ("edu", "Educational institute"),
    ("reli", "Religious institution"),
    ("crs", "Clinical research sponsor"),
    ("cg", "Community group"),
    ("bus", "Non-healthcare business"),
    ("other", "Other"),
    ("laboratory", "Laboratory"),
    ("imaging", "Imaging center"),
    ("pharmacy", "Pharmacy"),
    ("health-information-network", "Health information network"),
    ("health-data-aggregator", "Health data aggregator"),
];

/// The name people read for a type code; unknown codes read as "Other".
pub fn type_label(code: &str) -> &'static str {
    ORG_TYPES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, l)| *l)
        .unwrap_or("Other")
}

/// A role in one organization. Ordered: a manager may do all a member may, and so on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Member,
    Manager,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Manager, Role::Member, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Manager => "manager",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Some(Role::Viewer),
            "member" => Some(Role::Member),
            "manager" => Some(Role::Manager),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Viewer => "Viewer",
            Role::Member => "Member",
            Role::Manager => "Manager",
        }
    }
}

/// Proof that the caller holds at least some role in one organization. Only `authorize`
/// makes one, and repository functions that touch an organization's data take it, so an
/// unchecked call does not compile.
#[derive(Clone, Debug)]
pub struct OrgScope {
    org_id: i64,
    role: Role,
}

impl OrgScope {
    pub fn org_id(&self) -> i64 {
        self.org_id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn can(&self, needed: Role) -> bool {
        self.role >= needed
    }
}

/// What a user may see: every organization they belong to, and everything below those.
/// The role there is the highest one held on the way down from the root.
pub fn visible_roles(
    all: &[Organization],
    memberships: &[(i64, Role)],
    superuser: bool,
) -> BTreeMap<i64, Role> {
    let parent: BTreeMap<i64, Option<i64>> = all.iter().map(|o| (o.id, o.part_of)).collect();
    let direct: BTreeMap<i64, Role> = memberships.iter().copied().collect();
    let mut out = BTreeMap::new();
    for org in all.iter().filter(|o| o.id != ROOT_ID) {
        if superuser {
            out.insert(org.id, Role::Manager);
            continue;
        }
        if let Some(role) = role_along_chain(org.id, &parent, &direct) {
            out.insert(org.id, role);
        }
    }
    out
}

fn role_along_chain(
    org_id: i64,
    parent: &BTreeMap<i64, Option<i64>>,
    direct: &BTreeMap<i64, Role>,
) -> Option<Role> {
    let mut best: Option<Role> = None;
    let mut cur = Some(org_id);
    // The depth bound guards against a cycle that bad data could make.
    for _ in 0..64 {
        let Some(id) = cur else { break };
        if let Some(r) = direct.get(&id) {
            best = best.max(Some(*r));
        }
        cur = parent.get(&id).copied().flatten();
    }
    best
}

/// Checks the caller's role in `org_id` and hands back the proof. An organization the caller
/// cannot see at all is reported as missing, so its existence does not leak.
pub fn authorize(
    conn: &mut crate::db::DbConnection,
    user: &crate::auth::CurrentUser,
    org_id: i64,
    needed: Role,
) -> Result<OrgScope, AppError> {
    if org_id == ROOT_ID {
        return Err(AppError::not_found("Organization"));
    }
    let chain = repo::ancestry(conn, org_id)?;
    if chain.is_empty() {
        return Err(AppError::not_found("Organization"));
    }
    let role = if user.is_superuser() {
        Some(Role::Manager)
    } else {
        let memberships = match user.practitioner_id {
            Some(pid) => repo::memberships(conn, pid)?,
            None => Vec::new(),
        };
        chain
            .iter()
            .filter_map(|id| memberships.iter().find(|(o, _)| o == id).map(|(_, r)| *r))
            .max()
    };
    match role {
        None => Err(AppError::not_found("Organization")),
        Some(r) if r < needed => Err(AppError::Forbidden(format!(
            "This needs the {} role in this organization; yours is {}.",
            needed.as_str(),
            r.as_str()
        ))),
        Some(r) => Ok(OrgScope { org_id, role: r }),
    }
}

/// One write transaction done as `user` holding at least `needed` in `org_id`: the check
/// and the work commit together, and the work gets the scope that proves the check.
pub async fn act<T, F>(
    db: &crate::db::Db,
    user: &crate::auth::CurrentUser,
    org_id: i64,
    needed: Role,
    f: F,
) -> Result<T, AppError>
where
    F: FnOnce(
            &mut crate::db::DbConnection,
            &crate::auth::CurrentUser,
            &OrgScope,
        ) -> Result<T, AppError>
        + Send
        + 'static,
    T: Send + 'static,
{
    let user = user.clone();
    db.tx(move |conn| {
        let scope = authorize(conn, &user, org_id, needed)?;
        f(conn, &user, &scope)
    })
    .await
}

/// Checks a name and type for a new or renamed organization.
pub fn validate(name: &str, org_type: &str) -> FieldErrors {
    let mut errors = FieldErrors::new();
    let name = name.trim();
    if name.is_empty() {
        errors.insert("name".into(), vec!["Enter a name.".into()]);
    } else if name.chars().count() > 200 {
        errors.insert("name".into(), vec!["Use at most 200 characters.".into()]);
    }
    if !ORG_TYPES.iter().any(|(c, _)| *c == org_type) {
        errors.insert(
            "type".into(),
            vec![format!(
                "Choose one of: {}.",
                ORG_TYPES
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
        );
    }
    errors
}

/// One organization in the tree shown to a user, with the role they hold there.
#[derive(Clone, Debug)]
pub struct TreeNode {
    pub org: Organization,
    pub role: Role,
    pub children: Vec<TreeNode>,
}

/// Builds the forest of visible organizations. An organization whose parent the user cannot
/// see becomes a root of its own, so nothing visible goes missing.
pub fn build_tree(all: &[Organization], visible: &BTreeMap<i64, Role>) -> Vec<TreeNode> {
    let mut children: BTreeMap<i64, Vec<&Organization>> = BTreeMap::new();
    let mut roots = Vec::new();
    for org in all.iter().filter(|o| visible.contains_key(&o.id)) {
        match org.part_of.filter(|p| visible.contains_key(p)) {
            Some(p) => children.entry(p).or_default().push(org),
            None => roots.push(org),
        }
    }
    fn node(
        org: &Organization,
        children: &BTreeMap<i64, Vec<&Organization>>,
        visible: &BTreeMap<i64, Role>,
        depth: usize,
    ) -> TreeNode {
        let kids = if depth > 64 {
            Vec::new()
        } else {
            children
                .get(&org.id)
                .map(|v| {
                    v.iter()
                        .map(|c| node(c, children, visible, depth + 1))
                        .collect()
                })
                .unwrap_or_default()
        };
        TreeNode {
            org: org.clone(),
            role: visible[&org.id],
            children: kids,
        }
    }
    let mut out: Vec<TreeNode> = roots
        .into_iter()
        .map(|r| node(r, &children, visible, 0))
        .collect();
    sort_tree(&mut out);
    out
}

fn sort_tree(nodes: &mut [TreeNode]) {
    nodes.sort_by_key(|a| a.org.name.to_lowercase());
    for n in nodes.iter_mut() {
        sort_tree(&mut n.children);
    }
}

// ---- Operations shared by the console and the API -------------------------------------------

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;

/// Creates an organization under `part_of` (0 for top level, which only superusers may do).
/// The creator becomes its manager.
pub fn create(
    conn: &mut DbConnection,
    user: &CurrentUser,
    name: &str,
    org_type: &str,
    part_of: i64,
) -> Result<i64, AppError> {
    let errors = validate(name, org_type);
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    if part_of == ROOT_ID {
        if !user.is_superuser() {
            return Err(AppError::Forbidden(
                "Only superusers can create top-level organizations; create it inside one you manage."
                    .into(),
            ));
        }
    } else {
        authorize(conn, user, part_of, Role::Manager)?;
    }
    let id = repo::create(conn, name, org_type, part_of, user.practitioner_id)?;
    Audit::by(user, "organization.create")
        .object("organization", id)
        .org(id)
        .detail(serde_json::json!({"name": name.trim(), "type": org_type, "partOf": part_of}))
        .record(conn)?;
    Ok(id)
}

pub fn update(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    name: &str,
    org_type: &str,
) -> Result<(), AppError> {
    require(scope, Role::Manager)?;
    let errors = validate(name, org_type);
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    repo::update(conn, scope, name, org_type)?;
    Audit::by(user, "organization.update")
        .object("organization", scope.org_id())
        .org(scope.org_id())
        .detail(serde_json::json!({"name": name.trim(), "type": org_type}))
        .record(conn)
}

/// Deletes an organization that nothing depends on any more; otherwise says what is left.
pub fn delete(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
) -> Result<(), AppError> {
    require(scope, Role::Manager)?;
    let left = describe_dependents(repo::dependents(conn, scope)?);
    if !left.is_empty() {
        return Err(AppError::Conflict(format!(
            "This organization still has {left}. Move or remove them first, then delete it."
        )));
    }
    let org = repo::get(conn, scope)?;
    repo::delete(conn, scope)?;
    Audit::by(user, "organization.delete")
        .object("organization", scope.org_id())
        .org(scope.org_id())
        .detail(serde_json::json!({"name": org.name}))
        .record(conn)
}

/// Adds a practitioner, found by e-mail, with a role.
pub fn add_member(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    email: &str,
    role: Role,
) -> Result<i64, AppError> {
    require(scope, Role::Manager)?;
    let email = crate::util::normalize_email(email);
    let practitioner_id = find_practitioner_for_membership(conn, &email)?;
    add_member_by_id(conn, user, scope, practitioner_id, role, &email)?;
    Ok(practitioner_id)
}

pub fn find_practitioner_for_membership(
    conn: &mut DbConnection,
    email: &str,
) -> Result<i64, AppError> {
    let found = crate::practitioner::repo::find_by_email(conn, email)?;
    match found {
        None => Err(AppError::invalid(
            "email",
            "No practitioner with this e-mail exists.",
        )),
        Some(u) if u.user.user_type == "patient" => Err(AppError::invalid(
            "email",
            format!("{email} is a patient account."),
        )),
        Some(u) => u
            .practitioner_id
            .ok_or_else(|| AppError::invalid("email", "No practitioner with this e-mail exists.")),
    }
}

pub fn add_member_by_id(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    practitioner_id: i64,
    role: Role,
    email: &str,
) -> Result<(), AppError> {
    require(scope, Role::Manager)?;
    if let Some(existing) = repo::member_role(conn, scope, practitioner_id)? {
        return Err(AppError::Conflict(format!(
            "{email} is already a member of this organization, as {}. Change the role instead.",
            existing.as_str()
        )));
    }
    repo::add_member(conn, scope, practitioner_id, role)?;
    Audit::by(user, "organization.member.add")
        .object("practitioner", practitioner_id)
        .org(scope.org_id())
        .detail(serde_json::json!({"email": email, "role": role.as_str()}))
        .record(conn)
}

pub fn change_role(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    practitioner_id: i64,
    role: Role,
) -> Result<(), AppError> {
    require(scope, Role::Manager)?;
    let current = repo::member_role(conn, scope, practitioner_id)?
        .ok_or_else(|| AppError::not_found("Member"))?;
    if current == Role::Manager && role != Role::Manager {
        keep_a_manager(conn, scope)?;
    }
    repo::set_role(conn, scope, practitioner_id, role)?;
    Audit::by(user, "organization.member.role")
        .object("practitioner", practitioner_id)
        .org(scope.org_id())
        .detail(serde_json::json!({"from": current.as_str(), "to": role.as_str()}))
        .record(conn)
}

pub fn remove_member(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    practitioner_id: i64,
) -> Result<(), AppError> {
    require(scope, Role::Manager)?;
    let current = repo::member_role(conn, scope, practitioner_id)?
        .ok_or_else(|| AppError::not_found("Member"))?;
    if current == Role::Manager {
        keep_a_manager(conn, scope)?;
    }
    repo::remove_member(conn, scope, practitioner_id)?;
    Audit::by(user, "organization.member.remove")
        .object("practitioner", practitioner_id)
        .org(scope.org_id())
        .record(conn)
}

/// An organization left without a manager could only be run by a superuser again.
fn keep_a_manager(conn: &mut DbConnection, scope: &OrgScope) -> Result<(), AppError> {
    if repo::count_managers(conn, scope)? <= 1 {
        return Err(AppError::Conflict(
            "This is the organization's only manager. Make someone else a manager first.".into(),
        ));
    }
    Ok(())
}

pub fn require(scope: &OrgScope, needed: Role) -> Result<(), AppError> {
    if scope.can(needed) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "This needs the {} role in this organization; yours is {}.",
            needed.as_str(),
            scope.role().as_str()
        )))
    }
}

/// The organizations a user may see, with the role held in each.
pub fn visible(
    conn: &mut DbConnection,
    user: &CurrentUser,
) -> Result<(Vec<Organization>, BTreeMap<i64, Role>), AppError> {
    let all = repo::all(conn)?;
    let memberships = match user.practitioner_id {
        Some(pid) => repo::memberships(conn, pid)?,
        None => Vec::new(),
    };
    let roles = visible_roles(&all, &memberships, user.is_superuser());
    Ok((all, roles))
}

/// "2 sub-organizations, 1 patient and 3 studies"; empty when nothing depends on it.
pub fn describe_dependents((children, patients, studies): (i64, i64, i64)) -> String {
    let parts: Vec<String> = [
        (children, "sub-organization"),
        (patients, "patient"),
        (studies, "study"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, noun)| plural(n, noun))
    .collect();
    join_and(&parts)
}

fn plural(n: i64, noun: &str) -> String {
    match (n, noun) {
        (1, _) => format!("1 {noun}"),
        (_, "study") => format!("{n} studies"),
        _ => format!("{n} {noun}s"),
    }
}

fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: i64, name: &str, part_of: Option<i64>) -> Organization {
        let t = crate::util::now();
        Organization {
            id,
            name: name.into(),
            org_type: "other".into(),
            part_of,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn roles_flow_down_the_tree_and_the_highest_wins() {
        let all = vec![
            org(0, "Root", None),
            org(1, "Hospital", Some(0)),
            org(2, "Cardiology", Some(1)),
            org(3, "Ward 3", Some(2)),
            org(4, "Other hospital", Some(0)),
        ];
        let v = visible_roles(&all, &[(1, Role::Viewer), (2, Role::Manager)], false);
        assert_eq!(v.get(&1), Some(&Role::Viewer));
        assert_eq!(v.get(&2), Some(&Role::Manager));
        assert_eq!(v.get(&3), Some(&Role::Manager));
        assert_eq!(v.get(&4), None);
        assert_eq!(v.get(&0), None);
        let tree = build_tree(&all, &v);
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].children[0].children[0].org.name, "Ward 3");
    }

    #[test]
    fn a_member_of_a_sub_organization_sees_it_as_a_root() {
        let all = vec![
            org(0, "Root", None),
            org(1, "A", Some(0)),
            org(2, "B", Some(1)),
        ];
        let v = visible_roles(&all, &[(2, Role::Member)], false);
        let tree = build_tree(&all, &v);
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].org.id, 2);
    }

    #[test]
    fn names_and_types_are_checked() {
        assert!(validate("Cardiology", "dept").is_empty());
        let e = validate("  ", "nope");
        assert!(e.contains_key("name") && e.contains_key("type"));
        assert!(validate(&"x".repeat(201), "team").contains_key("name"));
    }
}
