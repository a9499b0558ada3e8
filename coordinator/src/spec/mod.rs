//! Placeholder: owned by the spec helper.
