//! Reports from finished data alone: REPORT.md, summary.csv and the charts from a results file; JUnit XML and CI annotations from judged expectations.

pub mod annotations;
pub mod charts;
pub mod csv;
pub mod junit;
pub mod markdown;
pub mod plot;
mod output;
pub mod shown;

pub use annotations::github_annotation;
pub use junit::junit_xml;
pub use output::{write, ReportError, ReportFiles};
