//! Reports from a results file alone: REPORT.md, summary.csv and the charts, written next to the results.

pub mod charts;
pub mod csv;
pub mod markdown;
mod output;

pub use output::{write, ReportError, ReportFiles};
