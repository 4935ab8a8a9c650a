//! lossdiff
#![warn(missing_docs)]

pub mod alloc;
pub mod attention;
pub mod config;
pub mod error;
mod fsutil;
pub mod rng;
pub mod trace;

pub use error::{Error, Result};
