//! JUnit XML from judged expectations: one testsuite per template, one testcase per judgement, valid against Jenkins' junit-10.xsd.

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use crate::analysis::expect::{Judgement, Outcome};

/// The `type` of a `<failure>` for an expectation that does not hold.
pub const FAILED_TYPE: &str = "expectation-failed";
/// The `type` of a `<failure>` for an inconclusive expectation under `--strict`.
pub const INCONCLUSIVE_TYPE: &str = "inconclusive";

/// The JUnit XML document for `judgements`: a `<testsuites>` named `name`, one `<testsuite>`
/// per template in first-seen order, one `<testcase>` per judgement. A failed judgement is a
/// `<failure>`; an inconclusive one is `<skipped>` (it passes), or a `<failure>` when `strict`.
///
/// Judging takes no time of its own (the builds' times are in results.json), so every `time`
/// is `0`; the attribute is written because some consumers read it unconditionally.
pub fn junit_xml(judgements: &[Judgement], strict: bool, name: &str) -> String {
    let suites = by_template(judgements);
    let failures: usize = suites.iter().map(|s| s.count(strict).failures).sum();

    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .and_then(|_| {
            writer
                .create_element("testsuites")
                .with_attribute(("name", attribute(name).as_str()))
                .with_attribute(("tests", judgements.len().to_string().as_str()))
                .with_attribute(("failures", failures.to_string().as_str()))
                .with_attribute(("errors", "0"))
                .with_attribute(("time", "0"))
                .write_inner_content(|w| {
                    suites
                        .iter()
                        .try_for_each(|suite| write_suite(w, suite, strict))
                })
                .map(|_| ())
        })
        .expect("writing XML into memory cannot fail");
    let mut xml = String::from_utf8_lossy(&writer.into_inner()).into_owned();
    xml.push('\n');
    xml
}

/// A testcase's readable name: scenario · step · builder · network · expectation, with `every build`
/// for an expectation that holds after every build, the network only when not loopback, and `on ENGINE` last when
/// judged per engine (`check --matrix`).
pub fn case_name(j: &Judgement) -> String {
    let mut parts: Vec<&str> = vec![j.scenario.as_deref().unwrap_or("every build")];
    parts.extend(j.step.as_deref());
    parts.extend(j.builder.map(|b| b.name()));
    parts.extend(j.network.as_deref());
    parts.push(&j.expectation);
    let on = j.engine.as_ref().map(|e| format!("on {e}"));
    parts.extend(on.as_deref());
    parts.join(" · ")
}

/// One line saying what was expected, what was measured (on which engine, when judged per engine) and why it missed.
pub fn failure_message(j: &Judgement) -> String {
    let on = j.engine.as_ref().map_or_else(String::new, |e| format!(" on engine {e}"));
    let mut message = format!(
        "{}: expected {}, measured {}{on}",
        j.expectation, j.expected, j.measured
    );
    if let Some(reason) = &j.reason {
        message.push_str(&format!(" — {reason}"));
    }
    message
}

/// The judgements of one template, in the order they came.
struct Suite<'a> {
    template: &'a str,
    cases: Vec<&'a Judgement>,
}

struct Counts {
    failures: usize,
    skipped: usize,
}

impl Suite<'_> {
    fn count(&self, strict: bool) -> Counts {
        let inconclusive = self
            .cases
            .iter()
            .filter(|j| j.outcome == Outcome::Inconclusive)
            .count();
        let failed = self
            .cases
            .iter()
            .filter(|j| j.outcome == Outcome::Fail)
            .count();
        if strict {
            Counts {
                failures: failed + inconclusive,
                skipped: 0,
            }
        } else {
            Counts {
                failures: failed,
                skipped: inconclusive,
            }
        }
    }

    /// The Dockerfile, when every judgement of the template names the same one.
    fn dockerfile(&self) -> Option<&str> {
        let first = self.cases.first()?.dockerfile.as_str();
        let shared = self.cases.iter().all(|j| j.dockerfile == first);
        (shared && !first.is_empty()).then_some(first)
    }
}

fn by_template(judgements: &[Judgement]) -> Vec<Suite<'_>> {
    let mut suites: Vec<Suite> = Vec::new();
    for j in judgements {
        match suites.iter_mut().find(|s| s.template == j.template) {
            Some(suite) => suite.cases.push(j),
            None => suites.push(Suite {
                template: &j.template,
                cases: vec![j],
            }),
        }
    }
    suites
}

fn write_suite(w: &mut Writer<Vec<u8>>, suite: &Suite, strict: bool) -> std::io::Result<()> {
    let counts = suite.count(strict);
    let mut element = w
        .create_element("testsuite")
        .with_attribute(("name", attribute(suite.template).as_str()))
        .with_attribute(("tests", suite.cases.len().to_string().as_str()))
        .with_attribute(("failures", counts.failures.to_string().as_str()))
        .with_attribute(("errors", "0"))
        .with_attribute(("skipped", counts.skipped.to_string().as_str()))
        .with_attribute(("time", "0"));
    if let Some(dockerfile) = suite.dockerfile() {
        element = element.with_attribute(("file", attribute(dockerfile).as_str()));
    }
    element
        .write_inner_content(|w| {
            suite
                .cases
                .iter()
                .try_for_each(|j| write_case(w, j, strict))
        })
        .map(|_| ())
}

fn write_case(w: &mut Writer<Vec<u8>>, j: &Judgement, strict: bool) -> std::io::Result<()> {
    let classname = match &j.engine {
        Some(engine) => attribute(&format!("layerbench.{engine}.{}", j.template)),
        None => attribute(&format!("layerbench.{}", j.template)),
    };
    let element = w
        .create_element("testcase")
        .with_attribute(("name", attribute(&case_name(j)).as_str()))
        .with_attribute(("classname", classname.as_str()))
        .with_attribute(("time", "0"));
    let message = match j.outcome {
        Outcome::Inconclusive => format!("inconclusive: {}", failure_message(j)),
        _ => failure_message(j),
    };
    let failure_type = match j.outcome {
        Outcome::Pass => return element.write_empty().map(|_| ()),
        Outcome::Inconclusive if !strict => {
            return element
                .write_inner_content(|w| {
                    w.create_element("skipped")
                        .with_attribute(("message", attribute(&message).as_str()))
                        .write_empty()
                        .map(|_| ())
                })
                .map(|_| ());
        }
        Outcome::Inconclusive => INCONCLUSIVE_TYPE,
        Outcome::Fail => FAILED_TYPE,
    };
    element
        .write_inner_content(|w| {
            w.create_element("failure")
                .with_attribute(("message", attribute(&message).as_str()))
                .with_attribute(("type", failure_type))
                .write_text_content(BytesText::new(&text(&failure_body(j))))
                .map(|_| ())
        })
        .map(|_| ())
}

/// The failure's body: the message's parts one per line, then the Dockerfile and line.
fn failure_body(j: &Judgement) -> String {
    let mut body = format!(
        "expectation: {}\nexpected:    {}\nmeasured:    {}\n",
        j.expectation, j.expected, j.measured
    );
    if let Some(reason) = &j.reason {
        body.push_str(&format!("why:         {reason}\n"));
    }
    if !j.dockerfile.is_empty() {
        match j.line {
            Some(line) => body.push_str(&format!("dockerfile:  {}:{line}\n", j.dockerfile)),
            None => body.push_str(&format!("dockerfile:  {}\n", j.dockerfile)),
        }
    }
    body
}

/// Text content XML 1.0 can carry: characters it forbids (C0 controls other than tab, newline
/// and carriage return; U+FFFE and U+FFFF) are written out as `\u{…}`.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if allowed_in_xml(c) {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

/// An attribute value on one line: XML parsers turn tab, newline and carriage return in
/// attributes into spaces anyway, so the consumer sees exactly what was written.
fn attribute(s: &str) -> String {
    text(&s.replace("\r\n", " ").replace(['\r', '\n', '\t'], " "))
}

fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Builder;

    fn judgement(template: &str, outcome: Outcome) -> Judgement {
        Judgement {
            template: template.to_string(),
            scenario: Some("edit-go-source".to_string()),
            step: Some("edit-handler".to_string()),
            builder: Some(Builder::Buildkit),
            expectation: "cached = \"RUN go mod download\"".to_string(),
            expected: "cached in every build".to_string(),
            measured: match outcome {
                Outcome::Pass => "cached in 3 of 3 builds".to_string(),
                _ => "executed in 3 of 3 builds".to_string(),
            },
            outcome,
            reason: (outcome != Outcome::Pass)
                .then(|| "go.sum changed (COPY go.mod go.sum ./, line 4)".to_string()),
            dockerfile: "build/service.Dockerfile".to_string(),
            line: Some(5),
            engine: None,
            network: None,
        }
    }

    fn parse(xml: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(xml).expect("the output is well-formed XML")
    }

    fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
        node.attribute(name)
            .unwrap_or_else(|| panic!("<{}> lacks {name}", node.tag_name().name()))
    }

    fn elements<'a, 'i>(
        doc: &'a roxmltree::Document<'i>,
        tag: &str,
    ) -> Vec<roxmltree::Node<'a, 'i>> {
        doc.descendants().filter(|n| n.has_tag_name(tag)).collect()
    }

    #[test]
    fn case_names_read_as_scenario_step_builder_expectation() {
        let j = judgement("service", Outcome::Pass);
        assert_eq!(
            case_name(&j),
            "edit-go-source · edit-handler · buildkit · cached = \"RUN go mod download\""
        );
        let every = Judgement {
            scenario: None,
            step: None,
            builder: None,
            expectation: "user = \"non-root\"".to_string(),
            ..j
        };
        assert_eq!(case_name(&every), "every build · user = \"non-root\"");
    }

    #[test]
    fn a_matrix_testcase_names_its_engine_in_its_name_and_classname() {
        let j = Judgement { engine: Some("modern".to_string()), ..judgement("service", Outcome::Fail) };
        assert_eq!(case_name(&j), "edit-go-source · edit-handler · buildkit · cached = \"RUN go mod download\" · on modern");
        let xml = junit_xml(&[j], false, "check");
        let doc = parse(&xml);
        let case = elements(&doc, "testcase")[0];
        assert_eq!(attr(case, "classname"), "layerbench.modern.service");
        assert!(attr(elements(&doc, "failure")[0], "message").contains("on engine modern"), "{xml}");
    }

    #[test]
    fn one_suite_per_template_in_first_seen_order_with_consistent_counts() {
        let judgements = vec![
            judgement("service", Outcome::Pass),
            judgement("root-user", Outcome::Fail),
            judgement("service", Outcome::Inconclusive),
            judgement("root-user", Outcome::Pass),
            judgement("service", Outcome::Fail),
        ];
        let xml = junit_xml(&judgements, false, "layerbench check");
        let doc = parse(&xml);
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(attr(root, "name"), "layerbench check");
        assert_eq!(attr(root, "tests"), "5");
        assert_eq!(attr(root, "failures"), "2");
        assert_eq!(attr(root, "errors"), "0");

        let suites = elements(&doc, "testsuite");
        let names: Vec<&str> = suites.iter().map(|s| attr(*s, "name")).collect();
        assert_eq!(names, ["service", "root-user"]);
        for suite in &suites {
            let cases: Vec<_> = suite
                .children()
                .filter(|n| n.has_tag_name("testcase"))
                .collect();
            let with = |tag: &str| {
                cases
                    .iter()
                    .filter(|c| c.children().any(|n| n.has_tag_name(tag)))
                    .count()
            };
            assert_eq!(attr(*suite, "tests"), cases.len().to_string());
            assert_eq!(attr(*suite, "failures"), with("failure").to_string());
            assert_eq!(attr(*suite, "skipped"), with("skipped").to_string());
            assert_eq!(attr(*suite, "file"), "build/service.Dockerfile");
            let template = attr(*suite, "name");
            assert!(cases
                .iter()
                .all(|c| attr(*c, "classname") == format!("layerbench.{template}")));
        }
        assert_eq!(attr(suites[0], "tests"), "3");
        assert_eq!(attr(suites[0], "skipped"), "1");
    }

    #[test]
    fn a_failure_carries_expectation_values_reason_dockerfile_and_line() {
        let xml = junit_xml(&[judgement("service", Outcome::Fail)], false, "check");
        let doc = parse(&xml);
        let failure = elements(&doc, "failure")[0];
        assert_eq!(attr(failure, "type"), FAILED_TYPE);
        let message = attr(failure, "message");
        for part in [
            "cached = \"RUN go mod download\"",
            "expected cached in every build",
            "measured executed in 3 of 3 builds",
            "go.sum changed",
        ] {
            assert!(message.contains(part), "{part:?} missing from {message:?}");
        }
        let body = failure.text().unwrap_or_default();
        assert!(body.contains("why:         go.sum changed"), "{body}");
        assert!(
            body.contains("dockerfile:  build/service.Dockerfile:5"),
            "{body}"
        );
    }

    #[test]
    fn an_unknown_line_leaves_only_the_dockerfile_in_the_body() {
        let j = Judgement {
            line: None,
            ..judgement("service", Outcome::Fail)
        };
        let xml = junit_xml(&[j], false, "check");
        let doc = parse(&xml);
        let body = elements(&doc, "failure")[0]
            .text()
            .unwrap_or_default()
            .to_string();
        assert!(
            body.contains("dockerfile:  build/service.Dockerfile\n"),
            "{body}"
        );
    }

    #[test]
    fn inconclusive_is_skipped_and_passes_unless_strict() {
        let judgements = [judgement("service", Outcome::Inconclusive)];
        let lenient = junit_xml(&judgements, false, "check");
        let doc = parse(&lenient);
        assert!(elements(&doc, "failure").is_empty());
        let skipped = elements(&doc, "skipped");
        assert_eq!(skipped.len(), 1);
        assert!(attr(skipped[0], "message").starts_with("inconclusive: "));
        assert!(attr(skipped[0], "message").contains("go.sum changed"));
        assert_eq!(attr(doc.root_element(), "failures"), "0");

        let strict = junit_xml(&judgements, true, "check");
        let doc = parse(&strict);
        assert!(elements(&doc, "skipped").is_empty());
        let failures = elements(&doc, "failure");
        assert_eq!(failures.len(), 1);
        assert_eq!(attr(failures[0], "type"), INCONCLUSIVE_TYPE);
        assert!(attr(failures[0], "message").starts_with("inconclusive: "));
        assert_eq!(attr(doc.root_element(), "failures"), "1");
        assert_eq!(attr(elements(&doc, "testsuite")[0], "skipped"), "0");
    }

    #[test]
    fn markup_quotes_and_forbidden_control_characters_survive_as_text() {
        let nasty = "<b>\"it's\" & 'done'</b>\u{1b}[31m\u{0}\u{FFFF}\r\nnext";
        let j = Judgement {
            template: "a&b<c>".to_string(),
            measured: nasty.to_string(),
            reason: Some(nasty.to_string()),
            ..judgement("x", Outcome::Fail)
        };
        let xml = junit_xml(&[j], false, "\"quoted\" & <named>");
        let doc = parse(&xml);
        assert_eq!(attr(doc.root_element(), "name"), "\"quoted\" & <named>");
        assert_eq!(attr(elements(&doc, "testsuite")[0], "name"), "a&b<c>");
        let failure = elements(&doc, "failure")[0];
        let expected = "<b>\"it's\" & 'done'</b>\\u{1b}[31m\\u{0}\\u{ffff} next";
        assert!(
            attr(failure, "message").contains(expected),
            "{}",
            attr(failure, "message")
        );
        let body = failure.text().unwrap_or_default();
        assert!(
            body.contains("<b>\"it's\" & 'done'</b>\\u{1b}[31m\\u{0}\\u{ffff}\r\nnext"),
            "{body:?}"
        );
        assert!(!xml.contains('\u{1b}') && !xml.contains('\u{0}'));
    }

    #[test]
    fn no_judgements_make_an_empty_but_valid_document() {
        let xml = junit_xml(&[], false, "check");
        let doc = parse(&xml);
        assert_eq!(attr(doc.root_element(), "tests"), "0");
        assert!(elements(&doc, "testsuite").is_empty());
    }
}
