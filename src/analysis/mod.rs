//! Analysis: pure functions over finished results (statistics, claim verdicts, expectations, engine differences); nothing here talks to Docker.

pub mod compare;
pub mod engines;
pub mod expect;
pub mod ranks;
pub mod stats;
pub mod verdicts;

/// Bytes as decimal megabytes, one decimal (`15.1 MB`), as reports and evidence print sizes.
pub(crate) fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
