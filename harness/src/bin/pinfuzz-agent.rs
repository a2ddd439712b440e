//! The guest agent: `/init` of the pinfuzz guest (see `harness::agent`).
//!
//! Built statically (`RUSTFLAGS="-C target-feature=+crt-static" cargo build
//! --profile agent --target x86_64-unknown-linux-gnu --bin pinfuzz-agent`)
//! and packed into the initramfs by `harness::vm::initramfs`.

fn main() {
    if std::process::id() != 1 {
        eprintln!(
            "pinfuzz-agent runs as /init (pid 1) of a pinfuzz guest; \
             start a guest with `pinfuzz vm check` instead"
        );
        std::process::exit(2);
    }
    harness::agent::run_as_init()
}
