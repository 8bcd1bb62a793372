//! Schema helpers for fields Kubernetes must keep as free-form JSON.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A map of arbitrary JSON objects, kept verbatim by the API server.
pub fn free_form_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}
