//! Who is calling: console sessions, API bearer tokens, one-time sign-in codes and links,
//! OIDC sign-in, CSRF protection, and the extractors handlers use to ask.

pub mod code;
pub mod csrf;
pub mod extract;
pub mod oidc;
pub mod pages;
pub mod session;
pub mod token;

pub use csrf::CsrfForm;
pub use extract::{client_ip, Bearer, CurrentUser, Superuser};
