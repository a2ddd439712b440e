//! The Rust mirror (`harness::uapi`) against the C header (`kmod/pinfuzz.h`):
//! a tiny C program compiled with gcc prints every struct's size, every
//! field's offset and size, and every `#define`'s value; the test compares
//! each with the Rust side and fails on any difference, and on any define
//! of the header the mirror does not list.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of, size_of_val};
use std::path::PathBuf;
use std::process::Command;

use harness::uapi::*;

/// (C struct, C field, Rust offset, Rust size) for every field.
fn rust_fields() -> Vec<(&'static str, &'static str, usize, usize)> {
    macro_rules! field {
        ($cs:literal, $ty:ty, $f:ident) => {{
            let v: $ty = Default::default();
            ($cs, stringify!($f), offset_of!($ty, $f), size_of_val(&v.$f))
        }};
    }
    vec![
        field!("pinfuzz_gup", PinfuzzGup, addr),
        field!("pinfuzz_gup", PinfuzzGup, nr_pages),
        field!("pinfuzz_gup", PinfuzzGup, api),
        field!("pinfuzz_gup", PinfuzzGup, gup_flags),
        field!("pinfuzz_gup", PinfuzzGup, pid),
        field!("pinfuzz_gup", PinfuzzGup, reserved0),
        field!("pinfuzz_gup", PinfuzzGup, ret),
        field!("pinfuzz_gup", PinfuzzGup, handle),
        field!("pinfuzz_gup", PinfuzzGup, reserved1),
        field!("pinfuzz_release", PinfuzzRelease, handle),
        field!("pinfuzz_release", PinfuzzRelease, flags),
        field!("pinfuzz_page_info", PinfuzzPageInfo, pfn),
        field!("pinfuzz_page_info", PinfuzzPageInfo, head_pfn),
        field!("pinfuzz_page_info", PinfuzzPageInfo, refcount),
        field!("pinfuzz_page_info", PinfuzzPageInfo, mapcount),
        field!("pinfuzz_page_info", PinfuzzPageInfo, folio_mapcount),
        field!("pinfuzz_page_info", PinfuzzPageInfo, pincount),
        field!("pinfuzz_page_info", PinfuzzPageInfo, order),
        field!("pinfuzz_page_info", PinfuzzPageInfo, flags),
        field!("pinfuzz_query", PinfuzzQuery, addr),
        field!("pinfuzz_query", PinfuzzQuery, nr_pages),
        field!("pinfuzz_query", PinfuzzQuery, info_ptr),
        field!("pinfuzz_query", PinfuzzQuery, pid),
        field!("pinfuzz_query", PinfuzzQuery, handle),
        field!("pinfuzz_query", PinfuzzQuery, flags),
        field!("pinfuzz_query", PinfuzzQuery, reserved),
        field!("pinfuzz_status", PinfuzzStatus, abi_version),
        field!("pinfuzz_status", PinfuzzStatus, fault),
        field!("pinfuzz_status", PinfuzzStatus, handles),
        field!("pinfuzz_status", PinfuzzStatus, pages_got),
        field!("pinfuzz_status", PinfuzzStatus, pages_pinned),
        field!("pinfuzz_status", PinfuzzStatus, pages_held_total),
    ]
}

fn rust_sizes() -> Vec<(&'static str, usize)> {
    vec![
        ("pinfuzz_gup", size_of::<PinfuzzGup>()),
        ("pinfuzz_release", size_of::<PinfuzzRelease>()),
        ("pinfuzz_page_info", size_of::<PinfuzzPageInfo>()),
        ("pinfuzz_query", size_of::<PinfuzzQuery>()),
        ("pinfuzz_status", size_of::<PinfuzzStatus>()),
    ]
}

fn header() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kmod/pinfuzz.h")
}

/// Every `#define PINFUZZ_*` name of the header (the include guard is `_UAPI_*`).
fn header_defines() -> Vec<String> {
    let text = std::fs::read_to_string(header()).expect("read kmod/pinfuzz.h");
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("#define"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| name.starts_with("PINFUZZ_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn rust_mirror_matches_the_c_header() {
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n");
    c += &format!("#include \"{}\"\n", header().display());
    c += "#define FIELD(s, f) printf(\"field %s.%s %zu %zu\\n\", #s, #f, \
          offsetof(struct s, f), sizeof(((struct s *)0)->f))\n";
    c += "int main(void)\n{\n";
    for (s, _) in rust_sizes() {
        c += &format!("\tprintf(\"size {s} %zu\\n\", sizeof(struct {s}));\n");
    }
    for (s, f, _, _) in rust_fields() {
        c += &format!("\tFIELD({s}, {f});\n");
    }
    for name in header_defines() {
        c += &format!("\tprintf(\"const {name} %llu\\n\", (unsigned long long)({name}));\n");
    }
    c += "\treturn 0;\n}\n";

    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("layout.c");
    let bin = dir.path().join("layout");
    std::fs::write(&src, &c).expect("write layout.c");
    let out = Command::new("gcc")
        .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run gcc (needed to check the uapi mirror)");
    assert!(
        out.status.success(),
        "gcc failed on\n{c}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&bin).output().expect("run the layout program");
    assert!(out.status.success());
    let c_side: BTreeMap<String, Vec<u64>> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let key = format!("{} {}", w.next().unwrap(), w.next().unwrap());
            (key, w.map(|v| v.parse().unwrap()).collect())
        })
        .collect();

    let mut mismatches = Vec::new();
    let check = |mismatches: &mut Vec<String>, key: String, rust: Vec<u64>| match c_side.get(&key) {
        Some(c) if *c == rust => {}
        other => mismatches.push(format!("{key}: C {other:?}, Rust {rust:?}")),
    };
    for (s, size) in rust_sizes() {
        check(&mut mismatches, format!("size {s}"), vec![size as u64]);
    }
    for (s, f, off, size) in rust_fields() {
        check(
            &mut mismatches,
            format!("field {s}.{f}"),
            vec![off as u64, size as u64],
        );
    }
    let rust_consts: BTreeMap<&str, u64> = HEADER_CONSTANTS.iter().copied().collect();
    for name in header_defines() {
        match rust_consts.get(name.as_str()) {
            Some(&v) => check(&mut mismatches, format!("const {name}"), vec![v]),
            None => mismatches.push(format!("{name} is in the header but not in the mirror")),
        }
    }
    for name in rust_consts.keys() {
        if !c_side.contains_key(&format!("const {name}")) {
            mismatches.push(format!("{name} is in the mirror but not in the header"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "uapi mismatches:\n{}",
        mismatches.join("\n")
    );
    // Every struct of the header has a mirror.
    let text = std::fs::read_to_string(header()).unwrap();
    let structs: Vec<_> = text
        .lines()
        .filter_map(|l| l.strip_prefix("struct "))
        .filter_map(|l| l.strip_suffix(" {"))
        .collect();
    let mirrored: Vec<_> = rust_sizes().iter().map(|s| s.0).collect();
    assert_eq!(structs, mirrored, "structs of kmod/pinfuzz.h");
}
