//! Placeholder: owned by the plan helper.
