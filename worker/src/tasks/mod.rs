//! Placeholder: owned by the tasks helper.
