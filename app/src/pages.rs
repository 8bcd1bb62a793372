//! The pages, one module each, with their server functions beside their components.

pub mod access;
pub mod attempts;
pub mod keys;
pub mod new_session;
pub mod project;
pub mod projects;
pub mod session;
pub mod settings;
pub mod widgets;

use serde::{Deserialize, Serialize};

/// Models sessions may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Models {
    /// The models.
    pub models: Vec<String>,
    /// The default.
    pub default: String,
}
