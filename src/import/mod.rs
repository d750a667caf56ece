//! Importing patient lists (CSV): reading the file, checking every row before anything is
//! written, then writing all of it in one transaction. The console and `cohort
//! import-patients` share this code.

pub mod parse;
