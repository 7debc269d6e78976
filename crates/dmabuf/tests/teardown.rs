//! The framework lets go of the machine: once the program drops its handles, the
//! simulated hardware (and the gigabytes of memory it may hold) is freed.

use std::cell::Cell;
use std::rc::Rc;

use dmabuf::{AttachPolicy, MaintenancePolicy, System, SystemConfig};
use dmabuf_sim::{DmaDirection, Event, Observer, Platform, Sim};

/// Sets its flag when the simulator that owns it is dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Observer for DropFlag {
    fn event(&mut self, _: &Event<'_>) {}
    fn wants_provenance(&self) -> bool {
        false
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Regression: an attachment's view of its buffer held a clone of the system that was
/// never dropped, so every run that attached a device leaked its whole simulator.
#[test]
fn an_attachment_does_not_keep_the_system_alive() {
    let freed = Rc::new(Cell::new(false));
    {
        let sim =
            Sim::builder(Platform::preset("arm64-noncoherent").unwrap()).observer(DropFlag(freed.clone())).build();
        let sys = System::new(sim, SystemConfig { attach: AttachPolicy::Linux, maintenance: MaintenancePolicy::Linux });
        let gpu = sys.device("gpu").unwrap();
        let buf = sys.heap("system").unwrap().allocate(64 * 1024).unwrap();
        let att = buf.attach(gpu).unwrap();
        let map = att.map(DmaDirection::ToDevice).unwrap();
        drop(map);
        drop(att);
        drop(buf);
        assert!(!freed.get(), "the system is still in use");
    }
    assert!(freed.get(), "the simulator outlived every handle on it");
}
