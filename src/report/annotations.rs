//! GitHub Actions workflow commands for failed expectations: `::error file=…,line=…,title=…::message`, escaped per GitHub's rules.

use crate::analysis::expect::{Judgement, Outcome};

use super::junit::{case_name, failure_message};

/// The `::error` workflow command for a failed judgement, pointing at `dockerfile_path` and the
/// judgement's line (no `line=` when it is unknown); `None` for a pass or an inconclusive one.
/// The title names the template and the testcase; the message says expected, measured and why.
pub fn github_annotation(j: &Judgement, dockerfile_path: &str) -> Option<String> {
    if j.outcome != Outcome::Fail {
        return None;
    }
    let mut properties = vec![format!("file={}", escape_property(dockerfile_path))];
    if let Some(line) = j.line {
        properties.push(format!("line={line}"));
    }
    let title = format!("{}: {}", j.template, case_name(j));
    properties.push(format!("title={}", escape_property(&title)));
    Some(format!(
        "::error {}::{}",
        properties.join(","),
        escape_data(&failure_message(j))
    ))
}

/// A command's message: `%`, carriage return and newline are percent-encoded (GitHub's rules);
/// other control characters but tab (a terminal escape from a build log, a NUL) are written
/// out as `\u{…}` so the command stays one plain line.
fn escape_data(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// A command's property value: as data, plus `:` and `,`, which delimit properties.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Builder;

    fn failed() -> Judgement {
        Judgement {
            template: "service".to_string(),
            scenario: Some("edit-go-source".to_string()),
            step: Some("edit-handler".to_string()),
            builder: Some(Builder::Legacy),
            expectation: "cached = \"RUN go mod download\"".to_string(),
            expected: "cached in every build".to_string(),
            measured: "executed in 2 of 3 builds".to_string(),
            outcome: Outcome::Fail,
            reason: Some("go.sum changed".to_string()),
            dockerfile: "build/service.Dockerfile".to_string(),
            line: Some(7),
            engine: None,
            network: None,
        }
    }

    #[test]
    fn a_failure_points_at_the_dockerfile_line_and_says_expected_measured_and_why() {
        let line = github_annotation(&failed(), "templates/build/service.Dockerfile")
            .expect("a failed judgement is annotated");
        assert_eq!(
            line,
            "::error file=templates/build/service.Dockerfile,line=7,\
             title=service%3A edit-go-source · edit-handler · legacy · cached = \"RUN go mod download\"\
             ::cached = \"RUN go mod download\": expected cached in every build, \
             measured executed in 2 of 3 builds — go.sum changed"
        );
    }

    #[test]
    fn a_failure_judged_on_one_engine_of_a_matrix_names_the_engine() {
        let j = Judgement { engine: Some("modern".to_string()), ..failed() };
        let line = github_annotation(&j, "Dockerfile").expect("annotated");
        assert!(line.contains("title=service%3A edit-go-source · edit-handler · legacy · cached = \"RUN go mod download\" · on modern::"), "{line}");
        assert!(line.contains("measured executed in 2 of 3 builds on engine modern — go.sum changed"), "{line}");
    }

    #[test]
    fn an_unknown_line_leaves_out_the_line_property() {
        let j = Judgement {
            line: None,
            ..failed()
        };
        let line = github_annotation(&j, "Dockerfile").expect("annotated");
        assert!(line.starts_with("::error file=Dockerfile,title="), "{line}");
        assert!(!line.contains("line="), "{line}");
    }

    #[test]
    fn passes_and_inconclusive_judgements_are_not_annotated() {
        for outcome in [Outcome::Pass, Outcome::Inconclusive] {
            let j = Judgement {
                outcome,
                ..failed()
            };
            assert_eq!(github_annotation(&j, "Dockerfile"), None);
        }
    }

    #[test]
    fn properties_and_data_are_escaped_per_workflow_command_rules() {
        let j = Judgement {
            template: "a,b:c".to_string(),
            measured: "100% of\r\nbuilds".to_string(),
            reason: Some("a::b, c".to_string()),
            ..failed()
        };
        let line = github_annotation(&j, "dir:x/a,b%.Dockerfile").expect("annotated");
        assert!(
            line.starts_with("::error file=dir%3Ax/a%2Cb%25.Dockerfile,line=7,title=a%2Cb%3Ac%3A "),
            "{line}"
        );
        let (_, message) = line
            .split_once("::cached")
            .expect("the message follows the properties");
        assert!(
            message.contains("measured 100%25 of%0D%0Abuilds — a::b, c"),
            "{message}"
        );
        assert!(!line.contains('\n') && !line.contains('\r'));
    }

    #[test]
    fn control_characters_from_build_output_are_spelled_out() {
        let j = Judgement {
            reason: Some("\u{1b}[31merror\u{1b}[0m\u{0}".to_string()),
            ..failed()
        };
        let line = github_annotation(&j, "Dockerfile").expect("annotated");
        assert!(line.ends_with("\\u{1b}[31merror\\u{1b}[0m\\u{0}"), "{line}");
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    }

    #[test]
    fn percent_is_escaped_before_the_sequences_it_introduces() {
        assert_eq!(escape_data("%0A\n"), "%250A%0A");
        assert_eq!(escape_property("%3A:"), "%253A%3A");
    }
}
