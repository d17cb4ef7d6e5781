//! Reports.
pub mod terminal;
