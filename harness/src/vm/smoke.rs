//! The built-in smoke program of `pinfuzz vm check`: one of each
//! operation the guest must support (mmap, touch, pin, unpin, get, put,
//! fork, exit), in canonical program text.

/// The smoke program.
pub const SMOKE_PROGRAM: &str = "\
# pinfuzz vm check: one of each operation the guest must support
pinfuzz v1 thp=never use_zero_page=1 kernel=any
m0 = mmap(anon-private, pages=4, prot=rw)
touch(m0[0..4], write)
p0 = pin_user_pages_fast(m0[0..2], write)
unpin(p0)
g1 = get_user_pages(m0[2..4], none)
put(g1)
c0 = fork()
c0: touch(m0[0..1], read)
exit(c0)
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Program;

    #[test]
    fn smoke_program_is_valid_canonical_text() {
        let program =
            Program::parse_strict(SMOKE_PROGRAM, "smoke").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(program.steps.len(), 9);
        assert_eq!(program.to_string(), SMOKE_PROGRAM);
    }
}
