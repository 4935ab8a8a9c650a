//! lossdiff
#![warn(missing_docs)]

pub mod alloc;
pub mod attention;
pub mod calibrate;
pub mod cli;
pub mod compare;
pub mod config;
pub mod data;
pub mod error;
pub mod experiment;
pub mod external;
pub mod faults;
pub mod fingerprint;
mod fsutil;
pub mod gate;
pub mod golden;
pub mod import;
pub mod model;
pub mod optim;
pub mod params;
pub mod report;
pub mod rng;
pub mod runner;
pub mod schedule;
pub mod stats;
pub mod trace;
pub mod train;

pub use error::{Error, Result};
