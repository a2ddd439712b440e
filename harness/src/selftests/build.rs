//! Building the selftests as static binaries, cached per source.
//!
//! The command is the one kernel-lab.md measured, run in the selftests
//! directory of the prepared source:
//!
//! ```text
//! gcc -static -O2 -I <inc> -I . -I .. -I ../../../.. -I ../../../../tools/include/uapi \
//!     -o X X.c [vm_util.c] [thp_settings.c] <inc>/pinfuzz_selftest_env.c -lrt -lpthread -lm
//! ```
//!
//! `<inc>` holds an empty `local_config.h` (what the selftests' Makefile
//! writes without liburing: the io_uring cases are compiled out) and
//! `pinfuzz_selftest_env.c`, a constructor that clears
//! `PR_SET_THP_DISABLE`: the guest agent sets it on itself so its own heap
//! never holds THPs, the flag survives fork() and execve(), and the agent's
//! RunBinary leaves clearing it to the program (harness/src/agent/binary.rs).
//! Without it cow.c's THP cases would all skip. `vm_util.c` and
//! `thp_settings.c` are linked when the tree has them (6.1 has no
//! `thp_settings.c`).
//!
//! Binaries go to `<cache>/selftests/bin/<source id>/<recipe>/`, where
//! `<recipe>` hashes this recipe and the compiler's version, so a new gcc or
//! a changed recipe builds afresh. Each binary is written under a temporary
//! name and renamed; the compiler's messages are kept in `<name>.log`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::source::SourceTree;
use crate::kernel::Cache;
use crate::kernel::manifest::write_atomic;

/// The constructor linked into every binary (see the module doc).
const ENV_C: &str = r#"/* Linked into each selftest by pinfuzz (harness/src/selftests/build.rs). */
#include <stdio.h>
#include <sys/prctl.h>

/* The pinfuzz guest agent runs with PR_SET_THP_DISABLE, which survives
 * fork() and execve(); the selftests expect THPs as on any machine. */
__attribute__((constructor)) static void pinfuzz_allow_thp(void)
{
	if (prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0))
		perror("pinfuzz: prctl(PR_SET_THP_DISABLE, 0)");
}
"#;

/// Compiler flags before the sources (the include order matters: our
/// `local_config.h` first).
const CFLAGS: &[&str] = &["-static", "-O2"];
/// Include directories relative to the selftests directory.
const INCLUDES: &[&str] = &[".", "..", "../../../..", "../../../../tools/include/uapi"];
/// Libraries after the sources.
const LIBS: &[&str] = &["-lrt", "-lpthread", "-lm"];
/// Helper sources linked when present.
const HELPERS: &[&str] = &["vm_util.c", "thp_settings.c"];
/// Bump when the recipe changes in a way the hash does not see.
const RECIPE_VERSION: u32 = 1;

/// A built selftest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Binary {
    /// The source stem (`cow`).
    pub stem: String,
    /// The static executable.
    pub path: PathBuf,
    /// sha256 of the executable.
    pub sha256: String,
    /// The source it was built from.
    pub source: SourceTree,
    /// The source file, relative to the tree (`tools/testing/selftests/mm/cow.c`).
    pub source_file: String,
    /// The compile command.
    pub command: String,
    /// Whether this call compiled it (false: it was cached).
    pub built_now: bool,
}

/// The compiler used (`gcc --version`, first line).
pub fn compiler_version() -> Result<String> {
    let out = Command::new("gcc")
        .arg("--version")
        .output()
        .context("run gcc --version (install gcc and libc6-dev: static selftests need them)")?;
    if !out.status.success() {
        bail!("gcc --version failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// Build `stem` from `tree` (or return the cached binary).
pub fn build(cache: &Cache, tree: &SourceTree, stem: &str) -> Result<Binary> {
    let dir = tree.selftests_dir().with_context(|| {
        format!(
            "{} has no tools/testing/selftests/mm (or vm)",
            tree.root.display()
        )
    })?;
    let source_file = dir.join(format!("{stem}.c"));
    if !source_file.is_file() {
        bail!("{} does not exist", source_file.display());
    }
    let gcc = compiler_version()?;
    let out_dir = super::source::selftests_cache(cache)
        .join("bin")
        .join(&tree.id)
        .join(recipe_hash(&gcc));
    let inc = out_dir.join("inc");
    let env_c = inc.join("pinfuzz_selftest_env.c");
    if !env_c.is_file() {
        write_atomic(&inc.join("local_config.h"), b"")?;
        write_atomic(&env_c, ENV_C.as_bytes())?;
    }
    let binary = out_dir.join(stem);
    let mut args: Vec<String> = CFLAGS.iter().map(|s| s.to_string()).collect();
    args.push("-I".into());
    args.push(inc.display().to_string());
    for i in INCLUDES {
        args.push("-I".into());
        args.push((*i).to_string());
    }
    let partial = out_dir.join(format!(".{stem}.partial"));
    args.push("-o".into());
    args.push(partial.display().to_string());
    args.push(format!("{stem}.c"));
    for helper in HELPERS {
        if dir.join(helper).is_file() && *helper != format!("{stem}.c") {
            args.push((*helper).to_string());
        }
    }
    args.push(env_c.display().to_string());
    args.extend(LIBS.iter().map(|s| s.to_string()));
    let command = format!("cd {} && gcc {}", dir.display(), args.join(" "));
    let rel = source_file
        .strip_prefix(&tree.root)
        .unwrap_or(&source_file)
        .display()
        .to_string();
    let mut built_now = false;
    if !binary.is_file() {
        compile(&dir, &args, &command, &out_dir.join(format!("{stem}.log")))?;
        fs::rename(&partial, &binary)
            .with_context(|| format!("rename {} to {}", partial.display(), binary.display()))?;
        built_now = true;
    }
    Ok(Binary {
        stem: stem.to_string(),
        sha256: crate::kernel::module::file_sha256(&binary)?,
        path: binary,
        source: tree.clone(),
        source_file: rel,
        command,
        built_now,
    })
}

fn compile(dir: &Path, args: &[String], command: &str, log: &Path) -> Result<()> {
    let out = Command::new("gcc")
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("run {command}"))?;
    let mut text = format!("$ {command}\n");
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    write_atomic(log, text.as_bytes())?;
    if !out.status.success() {
        let errors: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("error"))
            .take(20)
            .collect();
        bail!(
            "{command} failed ({}); full log in {}:\n{}",
            out.status,
            log.display(),
            errors.join("\n")
        );
    }
    Ok(())
}

/// Short hash over everything that decides the binaries besides the source.
fn recipe_hash(gcc: &str) -> String {
    let mut h = Sha256::new();
    h.update(RECIPE_VERSION.to_le_bytes());
    h.update(gcc.as_bytes());
    for part in [CFLAGS, INCLUDES, LIBS, HELPERS] {
        for s in part {
            h.update(s.as_bytes());
            h.update([0]);
        }
    }
    h.update(ENV_C.as_bytes());
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selftests::source::{SourceSpec, prepare};

    /// Whether an ELF64 file asks for a dynamic loader (a PT_INTERP header).
    fn has_interpreter(elf: &[u8]) -> bool {
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let (size, count) = (u16_at(0x36), u16_at(0x38));
        (0..count).any(|i| {
            let o = phoff + i * size;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
        })
    }

    /// A tiny tree with a kselftest-style program: built statically, cached,
    /// and linked with the THP constructor.
    #[test]
    fn a_selftest_builds_static_and_is_cached() {
        if compiler_version().is_err() {
            eprintln!("skipped: no gcc");
            return;
        }
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        let write = |rel: &str, text: &str| {
            let p = t.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        write("Makefile", "VERSION = 6\nPATCHLEVEL = 99\nSUBLEVEL = 1\n");
        write("mm/gup_test.h", "#define GUP_TEST_ABI 1\n");
        write(
            "tools/testing/selftests/kselftest.h",
            "#include <stdio.h>\n",
        );
        write("tools/include/uapi/linux/x.h", "\n");
        write(
            "tools/testing/selftests/mm/probe.c",
            "#include \"local_config.h\"\n#include \"../../../../mm/gup_test.h\"\n\
             #include \"../kselftest.h\"\n#include <sys/prctl.h>\n\
             int main(void) { printf(\"thp_disable=%d abi=%d\\n\", \
             prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0), GUP_TEST_ABI); return 0; }\n",
        );
        let cache = tempfile::tempdir().unwrap();
        let cache = Cache::at(cache.path().to_path_buf());
        let src = prepare(&cache, &SourceSpec::Tree(t.to_path_buf())).unwrap();
        let bin = build(&cache, &src, "probe").unwrap();
        assert!(bin.built_now);
        assert_eq!(bin.source_file, "tools/testing/selftests/mm/probe.c");
        let elf = fs::read(&bin.path).unwrap();
        assert!(!has_interpreter(&elf), "not static: it has a PT_INTERP");
        // Run it with THP disabled, as the guest agent would: the
        // constructor clears the flag before main.
        let mut cmd = Command::new(&bin.path);
        // SAFETY: prctl with integer arguments only, between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "thp_disable=0 abi=1\n"
        );
        let again = build(&cache, &src, "probe").unwrap();
        assert!(!again.built_now);
        assert_eq!(again.sha256, bin.sha256);
        let err = build(&cache, &src, "missing").unwrap_err();
        assert!(err.to_string().contains("missing.c"), "{err}");
    }
}
