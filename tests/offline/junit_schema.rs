//! The JUnit XML `check --junit` writes is valid against the schema CI tools read (Jenkins' junit-10.xsd,
//! validated by xmllint from libxml2-utils) and reads back with the counts and messages it was given.
//!
//! No Docker engine is needed. xmllint is required: without it these tests fail, they do not skip
//! (scripts/setup-engine.sh installs it).

use std::path::PathBuf;
use std::process::Command;

use layerbench::analysis::expect::{Judgement, Outcome};
use layerbench::report::junit_xml;
use layerbench::results::Builder;

fn schema() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/junit/junit-10.xsd")
}

/// xmllint's verdict on `xml` against the schema: `Ok` when valid, else its complaint.
fn validate(xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("junit.xml");
    std::fs::write(&file, xml).expect("write the XML to validate");
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "xmllint could not run ({e}): install libxml2-utils (scripts/setup-engine.sh does)"
            )
        });
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn judgement(
    template: &str,
    expectation: &str,
    outcome: Outcome,
    reason: Option<&str>,
) -> Judgement {
    Judgement {
        template: template.to_string(),
        scenario: Some("edit-go-source".to_string()),
        step: Some("edit-handler".to_string()),
        builder: Some(Builder::Buildkit),
        expectation: expectation.to_string(),
        expected: "cached in every build".to_string(),
        measured: match outcome {
            Outcome::Pass => "cached in 3 of 3 builds".to_string(),
            _ => "executed in 3 of 3 builds".to_string(),
        },
        outcome,
        reason: reason.map(str::to_string),
        dockerfile: "build/service.Dockerfile".to_string(),
        line: Some(6),
        engine: None,
        network: None,
    }
}

/// Passes, failures with markup, quotes, ampersands and control characters in every field, and an inconclusive slowdown.
fn judgements() -> Vec<Judgement> {
    let nasty = "COPY <src> & \"dst\" 'x'\u{1b}[0m\u{0}\u{7}\u{FFFE}\r\n\tline two";
    vec![
        judgement(
            "service",
            "cached = \"RUN go mod download\"",
            Outcome::Pass,
            None,
        ),
        Judgement {
            scenario: None,
            step: None,
            builder: None,
            expectation: "max_image_size = \"30MB\"".to_string(),
            expected: "at most 30.0 MB".to_string(),
            measured: "31.2 MB".to_string(),
            ..judgement("service", "", Outcome::Fail, Some("the image grew"))
        },
        judgement("cgo & <scratch>", nasty, Outcome::Fail, Some(nasty)),
        Judgement {
            expectation: "max_slowdown = 1.15".to_string(),
            expected: "at most 1.15× the baseline".to_string(),
            measured: "1.12× (0.98–1.31)".to_string(),
            line: None,
            ..judgement(
                "service",
                "",
                Outcome::Inconclusive,
                Some("the interval spans 1.15; n=12 per side would settle it"),
            )
        },
    ]
}

#[test]
fn the_schema_check_rejects_a_document_the_schema_forbids() {
    let invalid = "<?xml version=\"1.0\"?><testsuites><testsuite name=\"x\"><testcase/></testsuite></testsuites>";
    assert!(
        validate(invalid).is_err(),
        "xmllint accepted a testsuite without counts and a nameless testcase"
    );
}

#[test]
fn passes_failures_with_nasty_characters_and_inconclusive_results_are_valid_junit() {
    for strict in [false, true] {
        let xml = junit_xml(
            &judgements(),
            strict,
            "layerbench check <examples> & \"more\"",
        );
        if let Err(complaint) = validate(&xml) {
            panic!("strict={strict}: the JUnit XML is not valid against junit-10.xsd:\n{complaint}\n{xml}");
        }
    }
    validate(&junit_xml(&[], false, "empty")).expect("an empty run is valid JUnit");
}

#[test]
fn the_junit_file_reads_back_with_its_counts_and_messages() {
    for strict in [false, true] {
        let xml = junit_xml(&judgements(), strict, "layerbench check");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.attribute("tests"), Some("4"));
        assert_eq!(
            root.attribute("failures"),
            Some(if strict { "3" } else { "2" })
        );

        let suites: Vec<_> = root
            .children()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        let names: Vec<_> = suites.iter().filter_map(|s| s.attribute("name")).collect();
        assert_eq!(names, ["service", "cgo & <scratch>"]);
        let service = suites[0];
        assert_eq!(service.attribute("tests"), Some("3"));
        assert_eq!(
            service.attribute("failures"),
            Some(if strict { "2" } else { "1" })
        );
        assert_eq!(
            service.attribute("skipped"),
            Some(if strict { "0" } else { "1" })
        );

        let messages: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("failure") || n.has_tag_name("skipped"))
            .filter_map(|n| n.attribute("message"))
            .collect();
        assert!(messages.contains(
            &"max_image_size = \"30MB\": expected at most 30.0 MB, measured 31.2 MB — the image grew"
        ), "{messages:#?}");
        let nasty = messages
            .iter()
            .find(|m| m.starts_with("COPY <src>"))
            .expect("the nasty failure's message");
        assert!(
            nasty.contains("COPY <src> & \"dst\" 'x'\\u{1b}[0m\\u{0}\\u{7}\\u{fffe}"),
            "{nasty}"
        );
        let slowdown = messages
            .iter()
            .find(|m| m.contains("max_slowdown"))
            .expect("the slowdown's message");
        assert!(
            slowdown.starts_with("inconclusive: ") && slowdown.contains("n=12 per side"),
            "{slowdown}"
        );

        let names: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .filter_map(|n| n.attribute("name"))
            .collect();
        assert!(
            names.contains(&"every build · max_image_size = \"30MB\""),
            "{names:#?}"
        );
    }
}
