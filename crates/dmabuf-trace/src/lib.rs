//! What a recorded program did with dma-bufs: the log that `dmabuf-record`'s interposer
//! writes, read back ([`log`]), its backtraces symbolized ([`symbolize`]) and turned
//! into a scenario that `dmabuf check` runs on a modelled board ([`mod@convert`]).
//!
//! [`mod@reference`] compares the DMA API calls a real kernel made for the program with
//! those the simulated framework's upstream maintenance makes for its trace.
//! [`run`] starts the program under the interposer and reads its log as it comes;
//! [`live`] prints misuse as it happens (`--live`). The interposer only records and knows
//! nothing of scenarios; `dmabuf record` (the CLI) only wires these together.

#![deny(missing_docs)]

pub mod convert;
pub mod live;
pub mod log;
pub mod reference;
pub mod run;
pub mod symbolize;

pub use convert::{Agents, Converted, Options, Summary, convert, to_scenario};
pub use log::{LogError, Record, read};
pub use symbolize::Symbolizer;
