//! The sanitizer from Rust, without a scenario file: a program drives the framework and
//! declares its accesses (who, which bytes, under which clock); the sanitizer watches the
//! simulator's events and compares what each read returned with what it should have.

use std::cell::RefCell;
use std::rc::Rc;

use dmabuf::AttachPolicy;
use dmabuf::{MaintenancePolicy, System, SystemConfig, raw};
use dmabuf_check::sanitizer::{AccessInfo, FindingKind, Path, Sanitizer, VClock};
use dmabuf_sim::{Adversarial, DmaDirection, Platform, Sim};

const LEN: u64 = 16 * 1024;

fn system(san: &Rc<RefCell<Sanitizer>>) -> System {
    let platform = Platform::preset("arm64-noncoherent").unwrap();
    let sim = Sim::builder(platform).chooser(Adversarial).observer(san.clone()).build();
    System::new(sim, SystemConfig { attach: AttachPolicy::Strict, maintenance: MaintenancePolicy::Minimal })
}

fn access(agent: &str, thread: usize, clock: &VClock, write: bool, line: u32, path: Path) -> AccessInfo {
    AccessInfo {
        agent: agent.into(),
        thread,
        clock: clock.clone(),
        buffer: "frame".into(),
        range: 0..LEN,
        write,
        line,
        path,
        iteration: None,
    }
}

/// The CPU fills the frame and a non-coherent GPU reads it; `end_bracket` says whether the
/// CPU ends its access (the clean) before the GPU maps the buffer.
fn cpu_to_gpu(end_bracket: bool) -> Vec<dmabuf_check::sanitizer::Finding> {
    let san = Rc::new(RefCell::new(Sanitizer::new()));
    let sys = system(&san);
    let gpu = sys.device("gpu").unwrap();
    let buf = sys.heap("system").unwrap().allocate(LEN).unwrap();
    let att = buf.attach(gpu).unwrap();
    let mut cpu = VClock::default();
    cpu.tick(0);

    raw::vmap(&buf).unwrap();
    raw::begin_cpu_access(&buf, DmaDirection::ToDevice, 0..LEN).unwrap();
    san.borrow_mut().set_step(1, "frame");
    san.borrow_mut().begin_access(access("cpu", 0, &cpu, true, 1, Path::Kernel { bracketed: true }));
    raw::kernel_write(&buf, 0, &[0x5a; LEN as usize]).unwrap();
    san.borrow_mut().end_access();
    if end_bracket {
        raw::end_cpu_access(&buf, DmaDirection::ToDevice).unwrap();
    }
    cpu.tick(0);

    let map = att.map(DmaDirection::ToDevice).unwrap();
    // The job is submitted by the CPU: it inherits the CPU's clock.
    let mut job = cpu.clone();
    job.tick(1);
    san.borrow_mut().set_step(3, "frame");
    san.borrow_mut().begin_access(access("gpu", 1, &job, false, 3, Path::Device { coherent: false, mapped_at: 2 }));
    let seen = map.device_read(0..LEN).unwrap();
    let found = san.borrow_mut().end_access();
    assert_eq!(found, seen.iter().any(|&b| b != 0x5a), "a finding exactly when the bytes are wrong");
    drop(map);
    if !end_bracket {
        raw::end_cpu_access(&buf, DmaDirection::ToDevice).unwrap();
    }
    san.borrow_mut().finish();
    san.borrow().findings().to_vec()
}

#[test]
fn a_missing_end_cpu_access_is_a_stale_read_naming_both_steps() {
    let f = cpu_to_gpu(false);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, FindingKind::StaleRead);
    assert_eq!(f[0].range, [0, LEN]);
    assert_eq!(f[0].line, 3);
    let lines: Vec<u32> = f[0].steps.iter().map(|s| s.line).collect();
    assert!(lines.contains(&1) && lines.contains(&3), "{lines:?}");
    assert!(f[0].hint.contains("before line 2"), "{}", f[0].hint);
}

#[test]
fn with_the_bracket_ended_there_is_nothing_to_report() {
    assert!(cpu_to_gpu(true).is_empty());
}

#[test]
fn unordered_accesses_are_a_race_whatever_the_bytes() {
    let san = Rc::new(RefCell::new(Sanitizer::new()));
    let sys = system(&san);
    let gpu = sys.device("gpu").unwrap();
    let buf = sys.heap("system").unwrap().allocate(LEN).unwrap();
    let att = buf.attach(gpu).unwrap();
    let map = att.map(DmaDirection::FromDevice).unwrap();
    // The GPU job was submitted with an empty clock: nothing orders it with the CPU.
    let mut job = VClock::default();
    job.tick(1);
    san.borrow_mut().begin_access(access("gpu", 1, &job, true, 5, Path::Device { coherent: false, mapped_at: 4 }));
    map.device_fill(0..LEN, 0x11).unwrap();
    san.borrow_mut().end_access();
    let mut cpu = VClock::default();
    cpu.tick(0);
    raw::vmap(&buf).unwrap();
    san.borrow_mut().begin_access(access("cpu", 0, &cpu, true, 6, Path::Kernel { bracketed: false }));
    raw::kernel_write(&buf, 0, &[0x22; LEN as usize]).unwrap();
    san.borrow_mut().end_access();
    let f = san.borrow().findings().to_vec();
    assert!(f.iter().any(|f| f.kind == FindingKind::Race && f.range == [0, LEN]), "{f:#?}");
}
