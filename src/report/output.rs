//! Writes a report's files next to its results file, each atomically, and removes charts a previous report made that this one no longer has.

use std::path::{Path, PathBuf};

use super::plot::{self, PlotError};
use crate::results::Results;

use super::charts::charts;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("failed to write report file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// What a report wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub report: PathBuf,
    pub summary: PathBuf,
    /// Every chart file, SVG and PNG.
    pub charts: Vec<PathBuf>,
}

/// Writes `REPORT.md`, `summary.csv` and `charts/*.{svg,png}` in the folder of `results_path`.
pub fn write(results: &Results, results_path: &Path) -> Result<ReportFiles, ReportError> {
    let dir = results_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let results_name = results_path.file_name().map_or("results.json".to_string(), |n| n.to_string_lossy().into_owned());
    // A matrix's charts and summary describe its first engine's builds; REPORT.md compares the engines.
    let reported = crate::analysis::engines::reported_builds(results);
    let body = reported.as_ref().unwrap_or(results);
    let charts = charts(body);
    let chart_dir = dir.join("charts");
    let mut written = Vec::new();
    for chart in &charts {
        let svg = chart_dir.join(format!("{}.svg", chart.stem));
        write_file(&svg, plot::svg(chart)?.as_bytes())?;
        let png = chart_dir.join(format!("{}.png", chart.stem));
        write_file(&png, &plot::png(chart)?)?;
        written.extend([svg, png]);
    }
    remove_stale_charts(&chart_dir, &written)?;
    let summary = dir.join("summary.csv");
    write_file(&summary, super::csv::summary(body).as_bytes())?;
    let report = dir.join("REPORT.md");
    let absolute_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    write_file(&report, super::markdown::report(results, &results_name, &absolute_dir, &charts).as_bytes())?;
    Ok(ReportFiles { report, summary, charts: written })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::durable::write(path, bytes).map_err(|source| ReportError::Write { path: path.to_path_buf(), source })
}

/// Chart files (`.svg`, `.png`) in the charts folder that this report did not write.
fn remove_stale_charts(chart_dir: &Path, written: &[PathBuf]) -> Result<(), ReportError> {
    let Ok(entries) = std::fs::read_dir(chart_dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_chart = path.extension().is_some_and(|e| e == "svg" || e == "png");
        if is_chart && !written.contains(&path) {
            std::fs::remove_file(&path).map_err(|source| ReportError::Write { path: path.clone(), source })?;
        }
    }
    Ok(())
}
