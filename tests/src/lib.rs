//! End-to-end tests of hint live in `tests/hint/`; this crate has no library code.
