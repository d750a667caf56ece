//! The console's shared frame: the `Shell` every page renders inside, the `Console`
//! extractor (a signed-in practitioner plus their session), and HTML error pages.

pub mod errors;
pub mod home;

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;

use crate::auth::session::{self, Flash};
use crate::auth::CurrentUser;
use crate::error::AppError;

pub struct ShellUser {
    pub display_name: String,
    pub email: String,
    pub is_superuser: bool,
}

/// What base.html needs on every page.
pub struct Shell {
    pub title: String,
    pub nav: &'static str,
    pub user: Option<ShellUser>,
    pub csrf: String,
    pub flash: Vec<Flash>,
}

impl Shell {
    pub fn new(
        session: &Session,
        user: Option<&CurrentUser>,
        title: impl Into<String>,
        nav: &'static str,
    ) -> Shell {
        Shell {
            title: title.into(),
            nav,
            user: user.map(|u| ShellUser {
                display_name: u.user.display_name(),
                email: u.user.email.clone(),
                is_superuser: u.is_superuser(),
            }),
            csrf: session::csrf_token(session),
            flash: session::take_flash(session),
        }
    }
}

/// A signed-in practitioner on a console page.
pub struct Console {
    pub user: CurrentUser,
    pub session: Session,
}

impl Console {
    pub fn shell(&self, title: impl Into<String>, nav: &'static str) -> Shell {
        Shell::new(&self.session, Some(&self.user), title, nav)
    }

    pub fn flash(&self, kind: &str, message: impl Into<String>) {
        session::flash(&self.session, kind, message);
    }

    /// The answer to a successful form post: a flash message and a redirect (POST/redirect/GET).
    pub fn done(&self, message: impl Into<String>, to: &str) -> HttpResponse {
        self.flash("success", message);
        see_other(to)
    }
}

pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_string()))
        .finish()
}

impl FromRequest for Console {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        let session = req.get_session();
        Box::pin(async move {
            Ok(Console {
                user: user.await?,
                session,
            })
        })
    }
}

/// A page anyone may open (sign-in pages): the session, and no user.
pub struct Visitor {
    pub session: Session,
}

impl Visitor {
    pub fn shell(&self, title: impl Into<String>) -> Shell {
        Shell::new(&self.session, None, title, "")
    }
}

impl FromRequest for Visitor {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Visitor {
            session: req.get_session(),
        }))
    }
}

/// Page numbers for console lists: 1-based, with a chosen size.
#[derive(Clone, Debug)]
pub struct Paging {
    pub page: i64,
    pub page_size: i64,
    pub total: i64,
}

impl Paging {
    pub fn new(page: Option<i64>, page_size: Option<i64>, allowed: &[i64]) -> Paging {
        let size = page_size
            .filter(|s| allowed.contains(s))
            .unwrap_or(allowed[0]);
        Paging {
            page: page.unwrap_or(1).max(1),
            page_size: size,
            total: 0,
        }
    }
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.page_size
    }
    pub fn pages(&self) -> i64 {
        ((self.total + self.page_size - 1) / self.page_size).max(1)
    }
    pub fn first_row(&self) -> i64 {
        if self.total == 0 {
            0
        } else {
            self.offset() + 1
        }
    }
    pub fn last_row(&self) -> i64 {
        (self.offset() + self.page_size).min(self.total)
    }
    pub fn has_prev(&self) -> bool {
        self.page > 1
    }
    pub fn has_next(&self) -> bool {
        self.page < self.pages()
    }
    /// Loads this page with `fetch(offset, limit) -> (rows, total)` and notes the total. A page
    /// past the end (a stale bookmark, a list that shrank) gives the last page instead.
    pub fn load<T>(
        &mut self,
        mut fetch: impl FnMut(i64, i64) -> crate::error::AppResult<(Vec<T>, i64)>,
    ) -> crate::error::AppResult<Vec<T>> {
        let (mut rows, total) = fetch(self.offset(), self.page_size)?;
        self.total = total;
        if rows.is_empty() && total > 0 && self.page > 1 {
            self.page = self.pages();
            rows = fetch(self.offset(), self.page_size)?.0;
        }
        Ok(rows)
    }
}

/// The page sizes every console list offers.
pub const PAGE_SIZES: [i64; 4] = [20, 100, 500, 1000];

/// A whole number from a query or form field; None when absent or not a number.
pub fn num(v: &Option<String>) -> Option<i64> {
    v.as_deref().and_then(|s| s.trim().parse().ok())
}

/// Builds a query string from pairs, leaving out empty values.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// Field messages for re-rendering a form beside its inputs.
#[derive(Default, Debug, Clone)]
pub struct FormErrors {
    fields: crate::error::FieldErrors,
    /// A message about the whole form, not one field.
    pub form: String,
}

impl FormErrors {
    pub fn get(&self, field: &str) -> String {
        self.fields
            .get(field)
            .map(|m| m.join(" "))
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_empty()
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.fields
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }

    /// Turns a domain error into messages for the form: field errors beside their fields,
    /// a refusal or conflict as the form's message. Anything else stays an error.
    pub fn from_error(e: AppError) -> Result<FormErrors, AppError> {
        match e {
            AppError::Invalid(fields) => Ok(FormErrors {
                fields,
                form: String::new(),
            }),
            AppError::Conflict(m) | AppError::BadRequest(m) | AppError::Forbidden(m) => {
                Ok(FormErrors {
                    fields: Default::default(),
                    form: m,
                })
            }
            other => Err(other),
        }
    }
}
