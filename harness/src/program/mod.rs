//! Programs as data: validity, repair, text, bytes and generation.
//!
//! A [`Program`] (types in [`crate::op`]) is *valid* when every step only
//! uses what is live at that point (a running process, a mapping in that
//! process's address space, a GUP handle not yet released, whoever took it)
//! and every number is within the limits of `op.rs`. [`Program::validate`] says why a program
//! is not valid; [`Program::fixup`] repairs any program (mutated, decoded,
//! loaded from an old corpus file) into a valid one and leaves a valid one
//! untouched. The rules themselves live in one place, [`rules`]; everything
//! else (the parsers, the byte codec, the generator) asks them.
//!
//! The other submodules convert programs: [`text`] prints the canonical
//! text form (`docs/program-format.md`), [`parse`] reads it back (strict
//! for hand-written files, lenient for old corpus files) with [`diag`]
//! diagnostics, [`codec`] maps fuzzer bytes to programs and back,
//! [`mod@generate`] draws random programs from a seeded RNG, [`arbitrary`]
//! plugs the codec into the `arbitrary` crate, [`fixup`] repairs programs
//! and [`selfcheck`] holds the format checks the `text_roundtrip` fuzz
//! target runs.

pub mod arbitrary;
pub mod codec;
pub mod diag;
pub mod fixup;
pub mod generate;
pub mod parse;
pub mod rules;
pub mod selfcheck;
#[cfg(test)]
mod test_ops;
pub mod text;

use std::fmt;

use crate::op::{MAX_CHILDREN, MAX_HANDLES, MAX_MAPS, MAX_STEPS, Program};

pub use codec::{decode, decode_with, encode};
pub use diag::{Diagnostic, ParseError, Severity};
pub use generate::generate;

/// Caps on the size of a program, at most the hard limits of `op.rs`.
///
/// Validity always uses the hard limits ([`Limits::FULL`]); smaller caps
/// are for the decoder and the generator (`pinfuzz gen --max-steps`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// At most this many steps ([`MAX_STEPS`]).
    pub max_steps: usize,
    /// At most this many mappings ([`MAX_MAPS`]).
    pub max_maps: usize,
    /// At most this many forks ([`MAX_CHILDREN`]).
    pub max_children: usize,
    /// At most this many GUP calls ([`MAX_HANDLES`]).
    pub max_handles: usize,
}

impl Limits {
    /// The hard limits of `op.rs`.
    pub const FULL: Limits = Limits {
        max_steps: MAX_STEPS,
        max_maps: MAX_MAPS,
        max_children: MAX_CHILDREN,
        max_handles: MAX_HANDLES,
    };

    /// These limits, each capped at its hard limit.
    pub fn capped(self) -> Limits {
        Limits {
            max_steps: self.max_steps.min(MAX_STEPS),
            max_maps: self.max_maps.min(MAX_MAPS),
            max_children: self.max_children.min(MAX_CHILDREN),
            max_handles: self.max_handles.min(MAX_HANDLES),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::FULL
    }
}

/// The part of a program a [`Problem`] is about, so that a parser can point
/// at the right token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The `kernel=` key of the header.
    Kernel,
    /// The n-th comment line above the header.
    ProgramComment(usize),
    /// The n-th comment line above a step.
    Comment(usize),
    /// The whole operation (counts, ordinals).
    Op,
    /// The process the step runs in (`c0:` prefix).
    Proc,
    /// The mapping of a range.
    Map,
    /// The page range.
    Range,
    /// `pages=` of mmap.
    Pages,
    /// `offset=` of mmap.
    Offset,
    /// The target process of a `*_remote` call.
    Target,
    /// The FOLL_* flags.
    Foll,
    /// The handle a release names.
    Handle,
    /// The child `exit` names.
    Child,
}

/// Why a program is not valid: one broken rule at one place.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Problem {
    /// Index of the step, `None` for the header and the comments above it.
    pub step: Option<usize>,
    /// The part of the step (or header) that breaks the rule.
    pub field: Field,
    /// What is wrong, in the names of the text format (`m0`, `p3`, `c1`).
    pub message: String,
    /// Another step the message refers to (where a handle was released,
    /// where a child exited), so a parser can cite its line.
    pub related: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(f, "step {step}: {}", self.message)?,
            None => write!(f, "header: {}", self.message)?,
        }
        if let Some(related) = self.related {
            write!(f, " (step {related})")?;
        }
        Ok(())
    }
}

/// What [`Program::fixup_report`] changed: a dropped step or a clamped value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Repair {
    /// Index of the step in the program *before* the repair; `None` for the
    /// header and the comments above it.
    pub step: Option<usize>,
    /// The field changed, or [`Field::Op`] when the step was dropped.
    pub field: Field,
    /// What was done and why.
    pub message: String,
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(f, "step {step}: {}", self.message),
            None => write!(f, "header: {}", self.message),
        }
    }
}

impl Program {
    /// Check every rule of [`rules`]; all problems, in program order.
    ///
    /// # Errors
    ///
    /// Every broken rule, in step order (header first). A step that is
    /// invalid still defines its result for the steps after it, so one
    /// mistake gives one problem, not a cascade.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let problems = rules::validate(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Repair any program into a valid one: drop steps that use what is not
    /// live at that point, clamp numbers to the limits, clear FOLL_* bits
    /// that are not allowed, renumber ids to ordinals. The identity on a
    /// valid program.
    pub fn fixup(&mut self) {
        fixup::fixup(self);
    }

    /// [`Program::fixup`], saying what it changed.
    pub fn fixup_report(&mut self) -> Vec<Repair> {
        fixup::fixup(self)
    }
}
