//! The `pinfuzz` command line.
fn main() {}
