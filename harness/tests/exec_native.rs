//! `run_program` on this host, where the helper module is not loaded: the
//! whole caller path (checks, fork, runner setup, error frame, reaping,
//! reset check) runs for real and must report the missing device as a
//! setup failure, not hang, crash or invent observations. Structurally
//! invalid programs are refused before anything runs. (The runs with the
//! module are in `exec_guest.rs`.)

use std::path::PathBuf;
use std::time::Duration;

use harness::exec::{self, ExecConfig, Stop};
use harness::op::{MapId, Op, PageRange, Proc, Program, Step};
use reference::{Access, MapKind, Prot};

fn step(op: Op) -> Step {
    Step {
        proc: Proc::Parent,
        op,
        comments: vec![],
    }
}

fn tiny() -> Program {
    Program {
        steps: vec![
            step(Op::Mmap {
                map: MapId(0),
                kind: MapKind::AnonPrivate,
                pages: 1,
                prot: Prot::ReadWrite,
                offset: 0,
            }),
            step(Op::Touch {
                map: MapId(0),
                range: PageRange { start: 0, end: 1 },
                access: Access::Write,
            }),
        ],
        ..Program::default()
    }
}

#[test]
fn a_missing_module_is_a_setup_failure() {
    let cfg = ExecConfig {
        device: PathBuf::from("/nonexistent/pinfuzz"),
        ..ExecConfig::default()
    };
    let mut seen = 0;
    let result = exec::run_program(&tiny(), &cfg, Duration::from_secs(30), &mut |_| {
        seen += 1;
        Ok(())
    });
    if !nix::unistd::geteuid().is_root() {
        // Exact counters need root (stat_refresh is 0600): refused up front.
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("stat_refresh"), "{err}");
        return;
    }
    let summary = result.expect("the run is attempted");
    assert_eq!(seen, 0);
    assert_eq!((summary.steps_run, summary.steps_total), (0, 2));
    match &summary.stopped {
        Some(Stop::SetupFailed { message }) => {
            assert!(message.contains("/nonexistent/pinfuzz"), "{message}")
        }
        other => panic!("expected a setup failure, got {other:?}"),
    }
    let reset = summary.reset.expect("every process was reaped");
    assert_eq!(reset.module_pages_held, None);
    assert!(!reset.ok, "no module, no proof that nothing is held");
}

#[test]
fn structurally_invalid_programs_are_refused_before_running() {
    let mut program = tiny();
    program.steps.remove(0);
    let err = exec::run_program(
        &program,
        &ExecConfig::default(),
        Duration::from_secs(30),
        &mut |_| panic!("nothing may run"),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("step 0") && msg.contains("before its mmap"),
        "{msg}"
    );
}
