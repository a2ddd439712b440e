//! Standalone C reproducers (`pinfuzz repro --emit-c`): not written yet.

use anyhow::{Result, bail};

use crate::op::Program;

/// The C reproducer of a program.
///
/// # Errors
/// Always, until the generator lands.
pub fn emit_c(_program: &Program, _origin: &str) -> Result<String> {
    bail!("--emit-c is not available yet")
}
