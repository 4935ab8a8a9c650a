//! lossdiff
#![warn(missing_docs)]

pub mod attention;
pub mod compare;
pub mod config;
pub mod error;
mod fsutil;
pub mod rng;
pub mod stats;
pub mod trace;

pub use error::{Error, Result};
