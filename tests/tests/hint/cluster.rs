//! Placeholder: the cluster tests.
