//! lossdiff
#![warn(missing_docs)]

pub mod attention;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod fingerprint;
mod fsutil;
pub mod model;
pub mod optim;
pub mod params;
pub mod report;
pub mod rng;
pub mod schedule;
pub mod trace;
pub mod train;

pub use error::{Error, Result};
