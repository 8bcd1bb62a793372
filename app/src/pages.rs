//! The pages, one module each, with their server functions.

pub mod project;
pub mod session;
mod widgets;
