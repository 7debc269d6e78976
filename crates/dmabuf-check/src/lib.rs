//! The checker: scenarios, the sanitizer and their reports.
//!
//! A *scenario* ([`scenario`]) is a small program in a litmus-test-like language: one step
//! a line, agents named by the platform, buffers named by the scenario. The *runner*
//! executes it on the simulated framework (`dmabuf` over `dmabuf-sim`) with the
//! *sanitizer* watching: it builds happens-before from program order, job submission and
//! fences, and compares the bytes every access really returned with the latest write
//! that happens before it (spec §7). Its findings name the scenario lines involved and the
//! missing step. The allocator ([`plan`]) chooses where a shared buffer lives, writes
//! the protocol that shares it as a scenario and proves it with the explorer.
#![deny(missing_docs)]

pub mod bench;
pub mod explore;
pub mod html;
pub mod memory;
pub mod plan;
pub mod replay;
pub mod report;
pub mod runner;
pub mod sanitizer;
pub mod scenario;
pub mod verdict;
