//! The scenario language: its syntax tree and its parser.
//!
//! The grammar, with an example of every construct, is in `docs/scenario-language.md`
//! at the root of the repository.

pub mod ast;
mod error;
mod lex;
mod parse;
pub mod source;

pub use ast::*;
pub use parse::{MAX_DEPTH, MAX_LEN, ParseError, parse, parse_file, parse_reader};
