//! The practitioner's own page: name, e-mail and personal API tokens.

pub mod pages;
