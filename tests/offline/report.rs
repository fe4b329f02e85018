//! Reports from results files alone: the files a report writes, that its charts are valid SVG and PNG of the
//! announced size, that its Markdown matches a reviewed snapshot, that writing it twice gives the same bytes,
//! and that the committed reference report is exactly what the code makes from its results.
//!
//! The fixture `tests/fixtures/report/results.json` is an excerpt of a real claims run (a few cells, unedited records).
//! To accept a reviewed change of the Markdown snapshot: `LAYERBENCH_UPDATE_SNAPSHOTS=1 cargo test --test offline report::`.

use std::path::{Path, PathBuf};

use layerbench::report::charts::{charts, CellOutcome, Figure, Phase};
use layerbench::results::Results;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/report/results.json")
}

/// Copies a results file into a fresh folder and writes its report there.
fn report_in_tempdir(results_path: &Path) -> (tempfile::TempDir, Results, layerbench::report::ReportFiles) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let copy = dir.path().join("results.json");
    std::fs::copy(results_path, &copy).expect("copy the results file");
    let results = Results::read(&copy).expect("the fixture parses");
    let files = layerbench::report::write(&results, &copy).expect("the report is written");
    (dir, results, files)
}

/// Relative path → bytes of every file under `dir`, sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir").to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&path).expect("read file")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_report_writes_the_markdown_the_csv_and_every_chart_in_both_formats() {
    let (dir, results, files) = report_in_tempdir(&fixture());
    let expected = charts(&results);
    let stems: Vec<&str> = expected.iter().map(|c| c.stem.as_str()).collect();
    for stem in ["rebuild-times", "time-split", "image-sizes", "timeline"] {
        assert!(stems.contains(&stem), "no {stem} chart among {stems:?}");
    }
    assert!(stems.iter().any(|s| s.starts_with("cache-map-")), "no cache map among {stems:?}");
    assert!(dir.path().join("REPORT.md").is_file() && dir.path().join("summary.csv").is_file());
    assert_eq!(files.charts.len(), 2 * expected.len());
    for chart in &expected {
        for ext in ["svg", "png"] {
            let path = dir.path().join("charts").join(format!("{}.{ext}", chart.stem));
            assert!(path.is_file(), "missing {}", path.display());
        }
    }
    // summary.csv: a header and one row per Dockerfile step of every build step of every cell.
    let csv = std::fs::read_to_string(&files.summary).expect("read summary.csv");
    let rows = csv.lines().count() - 1;
    let mut expected_rows = 0;
    let mut seen: Vec<(String, String, String, String, String)> = Vec::new();
    for r in &results.records {
        let key = (r.variant.clone(), r.scenario.clone(), format!("{:?}", r.builder), r.network.clone(), r.step.clone());
        if !seen.contains(&key) {
            expected_rows += r.layers.len().max(1);
            seen.push(key);
        }
    }
    assert_eq!(rows, expected_rows, "{csv}");
}

#[test]
fn every_svg_parses_and_every_png_decodes_at_the_size_the_chart_announces() {
    let (dir, results, _) = report_in_tempdir(&fixture());
    for chart in charts(&results) {
        let (width, height) = layerbench::report::plot::size(&chart);
        assert_eq!(width, 800);
        let svg_path = dir.path().join("charts").join(format!("{}.svg", chart.stem));
        let svg = std::fs::read_to_string(&svg_path).expect("read svg");
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{} does not parse: {e}", svg_path.display()));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.attribute("width"), Some(width.to_string().as_str()));
        assert_eq!(root.attribute("height"), Some(height.to_string().as_str()));
        let texts: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
        assert!(texts.contains(&chart.title.as_str()), "{}: no title among {texts:?}", chart.stem);

        let png_path = dir.path().join("charts").join(format!("{}.png", chart.stem));
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).expect("open png")));
        let mut reader = decoder.read_info().unwrap_or_else(|e| panic!("{} does not decode: {e}", png_path.display()));
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).expect("a frame");
        assert_eq!((info.width, info.height), (width, height), "{}", png_path.display());
        // Ink on the page: not a blank canvas.
        let dark = pixels.chunks(3).filter(|p| p.iter().all(|c| *c < 100)).count();
        assert!(dark > 500, "{}: only {dark} dark pixels", png_path.display());
    }
}

#[test]
fn every_chart_of_the_fixture_draws_what_the_records_say() {
    let results = Results::read(&fixture()).expect("the fixture parses");
    for chart in charts(&results) {
        match &chart.figure {
            Figure::RebuildTimes(groups) => {
                for g in groups {
                    for b in &g.bars {
                        assert!(b.min <= b.median && b.median <= b.max, "{b:?}");
                    }
                }
            }
            Figure::ImageSizes(bars) => {
                for b in bars {
                    let recorded = results.records.iter().filter_map(|r| r.image.as_ref().filter(|_| r.variant == b.variant)).map(|i| i.size_bytes);
                    assert!(recorded.into_iter().any(|s| s == b.bytes), "{b:?}");
                }
            }
            Figure::TimeSplit(bars) => {
                // Each bar is one recorded build: same wall time, and its step phases add up to that build's step durations.
                for b in bars {
                    let steps: f64 = b.segments.iter().filter(|(p, _)| !matches!(p, Phase::Setup | Phase::Export)).map(|(_, s)| s).sum();
                    let matches = results.records.iter().any(|r| {
                        let recorded: f64 = r.layers.iter().map(|l| l.duration_ms / 1000.0).sum();
                        r.wall_ms / 1000.0 == b.wall && (recorded - steps).abs() < 1e-9
                    });
                    assert!(matches, "no record behind {b:?}");
                }
            }
            Figure::Timeline(t) => {
                let behind = results.records.iter().find(|r| r.step == "baseline" && r.wall_ms / 1000.0 == t.wall);
                let r = behind.unwrap_or_else(|| panic!("no cold baseline with wall time {}", t.wall));
                let instructions: Vec<&str> = r.layers.iter().map(|l| l.instruction.as_str()).collect();
                assert_eq!(t.spans.iter().map(|s| s.instruction.as_str()).collect::<Vec<_>>(), instructions);
            }
            Figure::CacheMap(rows) => {
                // Every row's hits are the cached steps of some build of that scenario.
                let scenario = chart.stem.trim_start_matches("cache-map-");
                for row in rows {
                    let hits = row.cells.iter().filter(|c| c.outcome == CellOutcome::Hit).count();
                    let found = results.records.iter().filter(|r| r.scenario == scenario && r.step != "baseline").any(|r| {
                        r.layers.len() == row.cells.len() && r.layers.iter().filter(|l| l.cached && !l.is_base_image()).count() == hits
                    });
                    assert!(found, "{}: no build matches row {}", chart.stem, row.label);
                }
            }
        }
    }
}

#[test]
fn the_markdown_matches_its_reviewed_snapshot() {
    let (dir, _, _) = report_in_tempdir(&fixture());
    let got = std::fs::read_to_string(dir.path().join("REPORT.md")).expect("read REPORT.md");
    let snapshot = repo().join("tests/fixtures/report/REPORT.md");
    if std::env::var_os("LAYERBENCH_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &got).expect("write the snapshot");
    }
    let want = std::fs::read_to_string(&snapshot).expect("read the snapshot");
    assert!(got == want, "REPORT.md differs from {}:\n{}", snapshot.display(), first_difference(&want, &got));
}

fn first_difference(want: &str, got: &str) -> String {
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!("line {}:\n  want: {w}\n  got:  {g}", i + 1);
        }
    }
    format!("lengths differ: {} vs {} lines", want.lines().count(), got.lines().count())
}

#[test]
fn writing_a_report_twice_gives_the_same_bytes() {
    let (first, _, _) = report_in_tempdir(&fixture());
    let (second, _, _) = report_in_tempdir(&fixture());
    let (a, b) = (tree(first.path()), tree(second.path()));
    assert_eq!(a.iter().map(|(p, _)| p).collect::<Vec<_>>(), b.iter().map(|(p, _)| p).collect::<Vec<_>>());
    for ((path, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{path} differs between two reports of the same results");
    }
}

#[test]
fn the_committed_reference_report_is_what_its_results_make() {
    let reference = repo().join("results/reference");
    let (dir, _, _) = report_in_tempdir(&reference.join("results.json"));
    let made = tree(dir.path());
    let committed = tree(&reference);
    let names = |t: &[(String, Vec<u8>)]| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&made), names(&committed), "results/reference/ does not hold exactly the report's files; regenerate it with `layerbench report results/reference/results.json`");
    for ((path, x), (_, y)) in made.iter().zip(&committed) {
        assert!(x == y, "results/reference/{path} is not what `layerbench report results/reference/results.json` makes now; regenerate and commit it");
    }
}

#[test]
fn a_report_names_no_machine_path_or_address() {
    let (dir, results, files) = report_in_tempdir(&fixture());
    let mut written = vec![std::fs::read_to_string(&files.report).expect("read REPORT.md"), std::fs::read_to_string(&files.summary).expect("read summary.csv")];
    for chart in &files.charts {
        if chart.extension().is_some_and(|e| e == "svg") {
            written.push(std::fs::read_to_string(chart).expect("read a chart"));
        }
    }
    let machine = [results.app.as_str(), results.store.path.as_str(), results.options.proxy_url.as_str(), results.store.mirror.as_str()];
    for text in &written {
        for m in machine {
            assert!(!m.is_empty() && !text.contains(m), "a report file shows `{m}`");
        }
    }
    assert!(written[0].contains("| App | `sample-go-app` |") && written[0].contains("| loopback |"), "{}", written[0]);
    // An app below the results folder is shown by its path relative to it.
    let mut below = results.clone();
    below.app = dir.path().join("apps/svc").display().to_string();
    let files = layerbench::report::write(&below, &dir.path().join("results.json")).expect("the report is written");
    assert!(std::fs::read_to_string(files.report).expect("read REPORT.md").contains("| App | `apps/svc` |"));
}
