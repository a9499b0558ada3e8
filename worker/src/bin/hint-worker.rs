//! `hint-worker`: placeholder.
fn main() {}
