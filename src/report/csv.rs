//! summary.csv: one row per cell × scenario step × Dockerfile step, repetitions summarised, for spreadsheets and scripts.

use crate::analysis::stats::{wall_seconds, Summary};
use crate::results::{BuildRecord, Results};

use super::charts::{cells_of, repetitions, scenarios, steps_of};

pub const HEADER: &[&str] = &[
    "variant",
    "scenario",
    "builder",
    "network",
    "cache_state",
    "step",
    "builds",
    "builds_ok",
    "build_median_s",
    "build_min_s",
    "build_max_s",
    "proxy_requests_median",
    "image_bytes",
    "layer_index",
    "stage",
    "instruction",
    "cached_in",
    "executed_in",
    "layer_median_s",
    "layer_min_s",
    "layer_max_s",
    "error",
];

/// The CSV text, header first; rows in the order the run made them.
pub fn summary(results: &Results) -> String {
    let mut out = line(HEADER.iter().map(|s| s.to_string()));
    for scenario in scenarios(results) {
        for step in steps_of(results, &scenario) {
            for cell in cells_of(results, &scenario, &step) {
                for row in rows(cell, &repetitions(results, cell)) {
                    out.push_str(&line(row.into_iter()));
                }
            }
        }
    }
    out
}

fn rows(cell: &BuildRecord, reps: &[&BuildRecord]) -> Vec<Vec<String>> {
    let ok: Vec<&BuildRecord> = reps.iter().copied().filter(|r| r.outcome.is_ok()).collect();
    let wall = wall_seconds(&ok);
    let requests: Vec<f64> = ok.iter().map(|r| r.proxy.requests as f64).collect();
    let build = vec![
        cell.variant.clone(),
        cell.scenario.clone(),
        cell.builder.name().to_string(),
        cell.network.clone(),
        cell.cache_state.name().to_string(),
        cell.step.clone(),
        reps.len().to_string(),
        ok.len().to_string(),
        seconds(wall.as_ref().map(|s| s.median)),
        seconds(wall.as_ref().map(|s| s.min)),
        seconds(wall.as_ref().map(|s| s.max)),
        Summary::of(&requests).map_or(String::new(), |s| format!("{}", s.median)),
        ok.first().and_then(|r| r.image.as_ref()).map_or(String::new(), |i| i.size_bytes.to_string()),
    ];
    let error = reps.iter().find_map(|r| r.error.clone()).unwrap_or_default();
    let Some(first) = ok.first().or(reps.first()) else { return vec![] };
    if first.layers.is_empty() {
        let mut row = build;
        row.extend(std::iter::repeat_n(String::new(), 8));
        row.push(error);
        return vec![row];
    }
    first
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let same: Vec<_> = ok.iter().filter_map(|r| r.layers.get(i)).filter(|o| o.instruction == l.instruction).collect();
            let durations = Summary::of(&same.iter().map(|o| o.duration_ms / 1000.0).collect::<Vec<_>>());
            let mut row = build.clone();
            row.extend([
                (i + 1).to_string(),
                l.stage.clone(),
                l.instruction.clone(),
                same.iter().filter(|o| o.cached).count().to_string(),
                same.iter().filter(|o| !o.cached).count().to_string(),
                seconds(durations.as_ref().map(|s| s.median)),
                seconds(durations.as_ref().map(|s| s.min)),
                seconds(durations.as_ref().map(|s| s.max)),
                l.error.clone().unwrap_or_else(|| error.clone()),
            ]);
            row
        })
        .collect()
}

fn seconds(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.3}"))
}

/// One CSV line (RFC 4180 quoting: fields with a comma, quote or newline are quoted, quotes doubled).
fn line(fields: impl Iterator<Item = String>) -> String {
    let quoted: Vec<String> = fields
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{record_with, results_with};

    #[test]
    fn one_row_per_dockerfile_step_with_repetitions_summarised() {
        let steps = [("COPY . .", false, 0.5), ("RUN go build -o \"out\", .", false, 2.0)];
        let mut second = record_with("naive", "edit-go-source", "baseline", 3.0, &steps, 56);
        second.repetition = 2;
        second.layers[1].duration_ms = 4000.0;
        let results = results_with(vec![record_with("naive", "edit-go-source", "baseline", 2.5, &steps, 56), second]);
        let text = summary(&results);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0].split(',').count(), HEADER.len());
        assert_eq!(
            lines[2],
            "naive,edit-go-source,buildkit,loopback,cold,baseline,2,2,2.750,2.500,3.000,56,,2,build,\"RUN go build -o \"\"out\"\", .\",0,2,3.000,2.000,4.000,"
        );
    }
}
