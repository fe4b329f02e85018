//! Which builds in a results file belong to a template: the identity it was recorded with (Dockerfile content, target, build arguments) and the scenarios its expectations cover.

use std::collections::BTreeMap;

use crate::results::{BuildRecord, Results, TemplateRecord};

use super::{TemplateExpectations, BASELINE_STEP};

/// What identifies a template's builds in a results file: its [`TemplateRecord`] there must agree on all three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateIdentity {
    /// The Dockerfile's [`crate::results::content_digest`].
    pub dockerfile_sha256: String,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
}

impl TemplateIdentity {
    /// What differs between this identity and a template as a results file recorded it, in words; `None` when
    /// nothing recorded differs.
    fn difference(&self, recorded: &TemplateRecord) -> Option<String> {
        let mut differs = Vec::new();
        if let Some(digest) = recorded.dockerfile_sha256.as_ref().filter(|d| **d != self.dockerfile_sha256) {
            differs.push(format!("its Dockerfile ({}) had other content, {} where this one has {}", recorded.dockerfile, short_digest(digest), short_digest(&self.dockerfile_sha256)));
        }
        if recorded.target != self.target {
            let name = |t: &Option<String>| t.as_deref().map_or("the last stage".to_string(), |t| format!("`{t}`"));
            differs.push(format!("it was built to target {} where this one targets {}", name(&recorded.target), name(&self.target)));
        }
        if recorded.build_args != self.build_args {
            let list = |args: &BTreeMap<String, String>| if args.is_empty() { "none".to_string() } else { args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ") };
            differs.push(format!("it had build arguments {} where this one has {}", list(&recorded.build_args), list(&self.build_args)));
        }
        (!differs.is_empty()).then(|| differs.join("; "))
    }
}

fn short_digest(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

/// How the builds a results file holds under a template's name relate to the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateMatch {
    /// Built from the same Dockerfile content, target and build arguments.
    Same,
    /// The file does not record what the template was built from (written before layerbench recorded it): its
    /// builds are matched by name alone.
    Unrecorded,
    /// Built from something else: what differs.
    Differs(String),
    /// No build of that name.
    Absent,
}

impl TemplateExpectations {
    /// Whether `results` holds builds of this template as the project defines it, in a scenario its expectations cover.
    pub fn matches(&self, results: &Results) -> TemplateMatch {
        if !results.records.iter().any(|r| r.variant == self.name && self.judged(r)) {
            return TemplateMatch::Absent;
        }
        let recorded: Vec<&TemplateRecord> = results.options.templates.iter().filter(|t| t.name == self.name).collect();
        if recorded.is_empty() {
            return TemplateMatch::Unrecorded;
        }
        let mut why = None;
        for t in recorded {
            match self.identity.difference(t) {
                None if t.dockerfile_sha256.is_none() => return TemplateMatch::Unrecorded,
                None => return TemplateMatch::Same,
                Some(d) => why = Some(d),
            }
        }
        TemplateMatch::Differs(why.unwrap_or_default())
    }

    /// The builds that belong to this template in `results`: none when the file's builds of that name are of another template.
    pub(super) fn builds<'a>(&self, results: &'a Results) -> Vec<&'a BuildRecord> {
        if matches!(self.matches(results), TemplateMatch::Differs(_)) {
            return Vec::new();
        }
        results.records.iter().filter(|r| r.variant == self.name).collect()
    }

    /// Whether some expectation covers the build.
    fn judged(&self, r: &BuildRecord) -> bool {
        self.expectations.iter().any(|e| e.scenario.as_ref().map_or_else(|| self.covers(r), |s| &r.scenario == s))
    }

    /// Whether an expectation without `scenario` covers the build: the project's scenarios, or the baselines.
    pub(super) fn covers(&self, r: &BuildRecord) -> bool {
        if self.every_build_scenarios.is_empty() {
            r.step == BASELINE_STEP
        } else {
            self.every_build_scenarios.contains(&r.scenario)
        }
    }
}
