//! `arbitrary::Arbitrary` for [`Program`], through the byte codec.
//!
//! Fuzz targets written against `Arbitrary` (`fuzz_target!(|p: Program| ..)`)
//! get the same programs as targets that call `decode` on the raw input:
//! the input bytes are read with our stable format, not with `arbitrary`'s
//! own interpretation, which changes between crate versions. A program
//! takes all the bytes that are left, so it belongs last in a tuple or
//! struct of arbitrary values.

use arbitrary::{Arbitrary, Result, Unstructured};

use super::codec::{PROLOGUE_BYTES, decode};
use crate::op::Program;

impl<'a> Arbitrary<'a> for Program {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Program> {
        let rest = u.bytes(u.len())?;
        Ok(decode(rest))
    }

    fn arbitrary_take_rest(u: Unstructured<'a>) -> Result<Program> {
        Ok(decode(u.take_rest()))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (PROLOGUE_BYTES, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::encode;

    #[test]
    fn arbitrary_reads_the_codec_format() {
        let bytes: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(73)).collect();
        let from_arbitrary =
            Program::arbitrary_take_rest(Unstructured::new(&bytes)).expect("total");
        assert_eq!(from_arbitrary, decode(&bytes));
        let mut u = Unstructured::new(&bytes);
        assert_eq!(Program::arbitrary(&mut u).expect("total"), decode(&bytes));
        assert!(u.is_empty());
        assert_eq!(decode(&encode(&from_arbitrary)), from_arbitrary);
    }
}
