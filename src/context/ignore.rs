//! `.dockerignore` files as the Docker CLI and engine of a release read and match them: Docker 20.10's rules, and the rules of Docker 23 and later.
//!
//! Both dialects read a file alike (docker/cli 20.10 `builder/dockerignore`,
//! moby/patternmatcher `ignorefile.ReadAll` since 23.0), checked against
//! `/usr/bin/docker build`:
//! - a line whose first character is `#` is a comment (` #x` is the pattern `#x`);
//!   surrounding white space is dropped; a leading `!` re-includes;
//! - each pattern is cleaned like Go's `filepath.Clean` (`a/./b/../c` is `a/c`,
//!   a leading `..` stays and then matches nothing) and a leading `/` is dropped;
//! - a pattern must be a valid Go `filepath.Match` pattern; `*` and `?` stay
//!   within one path element, `**` spans elements, `\` escapes the next
//!   character; a path is matched against each pattern in order and the last
//!   match wins.
//!
//! **Docker 20.10** (`IgnoreDialect::Docker20`; moby 20.10 `pkg/fileutils`,
//! its `Matches` in the CLI's tar, the daemon's check and BuildKit's sync):
//! - a pattern is turned into a Go regular expression in which `.` and `$`
//!   are literal and every other character keeps its regular-expression
//!   meaning (so `[a-z]` is a class, and `+`, `(`, `|` are operators too);
//! - a pattern also matches a path when it matches the path's leading folders
//!   with as many elements as the pattern has (`a/*` matches `a/b/c`, but
//!   `**/x` does not match `a/b/x/y`);
//! - an excluded folder is not walked, unless some `!` pattern's text starts
//!   with the folder's path (`!a/keep` opens `a`, `!**/keep` opens nothing).
//!
//! **Docker 23 and later** (`IgnoreDialect::Docker23`; moby/patternmatcher
//! v0.5.0–v0.6.0, vendored by docker/cli 23.0–26.1, from moby's
//! `pkg/fileutils` changes of 2021, first released in 23.0):
//! - `.+()|{}$` are literal; `[`, `]`, `^` and `\` still reach the regular
//!   expression; a pattern with no `*`, `?`, `[`, `]` or `\` is compared as
//!   text, one ending in `**` (and nothing else special) as a prefix, and one
//!   starting with `**` (and nothing else special) as a suffix (`**x` matches
//!   `ax`);
//! - a single path is excluded when a pattern matches it or any of its
//!   leading folders (`MatchesOrParentMatches`: the daemon's deletion of the
//!   Dockerfile and `.dockerignore`), but the CLI's re-include of those two
//!   still asks the old question (`Matches`: leading folders with as many
//!   elements as the pattern);
//! - the walks (the CLI's tar, moby `pkg/archive`; BuildKit's sync,
//!   tonistiigi/fsutil `filter.go`) judge a path from its folder's judgement
//!   (`MatchesUsingParentResults`): a pattern that matched the folder matches
//!   everything in it, so `**/x` then `!q/r/x/keep` leaves all of `q/r/x`
//!   out but `keep`; a pattern is only tried where it could change the
//!   outcome, so `a/b` then `!a` leaves `a/b` out;
//! - the legacy tar enters an excluded folder as 20.10 does; BuildKit's sync
//!   enters every excluded folder when a `!` pattern (less a trailing `/**`
//!   or `/*`) has any of `*[]?^\`, else those its `!` patterns lie below, and
//!   sends an excluded folder it entered only when something below it is sent.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::ContextError;
use crate::results::EngineVersion;

/// Whose `.dockerignore` rules a context follows: those of the Docker CLI that
/// comes with the engine's release (see the module's header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IgnoreDialect {
    /// Docker 20.10 and before: moby's `pkg/fileutils`.
    #[default]
    Docker20,
    /// Docker 23.0 and later: moby/patternmatcher.
    Docker23,
}

impl IgnoreDialect {
    /// The dialect of a Docker release (`20.10.24+dfsg1`, `26.1.5+dfsg1`): 23
    /// and later speak `Docker23`, older releases `Docker20`; a version whose
    /// major number cannot be read (a development build) is taken as new.
    pub fn of_docker_version(version: &str) -> IgnoreDialect {
        let major = version.trim().trim_start_matches('v').split(['.', '-', '+']).next().and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(major) if major < 23 => IgnoreDialect::Docker20,
            _ => IgnoreDialect::Docker23,
        }
    }

    /// The dialect of the CLI that comes with `engine`.
    pub fn of_engine(engine: &EngineVersion) -> IgnoreDialect {
        IgnoreDialect::of_docker_version(&engine.engine)
    }
}

/// How a compiled pattern compares a path.
#[derive(Debug, Clone)]
enum Matcher {
    Regex(Regex),
    /// The path is the text.
    Exact(String),
    /// The path starts with the text (a pattern ending in `**`).
    Prefix(String),
    /// The path ends with the text, or is the text less its leading `/` (a pattern starting with `**`).
    Suffix(String),
}

impl Matcher {
    fn is_match(&self, path: &str) -> bool {
        match self {
            Matcher::Regex(re) => re.is_match(path),
            Matcher::Exact(text) => path == text,
            Matcher::Prefix(text) => path.starts_with(text.as_str()),
            Matcher::Suffix(text) => path.ends_with(text.as_str()) || text.strip_prefix('/') == Some(path),
        }
    }
}

/// One `.dockerignore` pattern, compiled.
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`, as Docker compares it with folder paths.
    text: String,
    /// How many path elements the pattern has.
    elements: usize,
    matcher: Matcher,
    /// A `!` pattern: a match re-includes.
    exclusion: bool,
}

/// The patterns of one `.dockerignore` file, in order.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
    origin: PathBuf,
    dialect: IgnoreDialect,
}

/// How a walk judged one path: whether it is left out, and (Docker 23 and
/// later) which patterns matched it, which its children inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkJudgement {
    pub excluded: bool,
    matched: Vec<bool>,
}

impl IgnoreRules {
    /// Reads `path` with Docker 20.10's rules; no file means no rules.
    pub fn read(path: &Path) -> Result<IgnoreRules, ContextError> {
        IgnoreRules::read_in(IgnoreDialect::Docker20, path)
    }

    /// Reads `path` with `dialect`'s rules; no file means no rules.
    pub fn read_in(dialect: IgnoreDialect, path: &Path) -> Result<IgnoreRules, ContextError> {
        match std::fs::read(path) {
            Ok(bytes) => IgnoreRules::parse_in(dialect, &String::from_utf8_lossy(&bytes), path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IgnoreRules { dialect, ..IgnoreRules::default() }),
            Err(source) => Err(ContextError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses `.dockerignore` text with Docker 20.10's rules; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<IgnoreRules, ContextError> {
        IgnoreRules::parse_in(IgnoreDialect::Docker20, text, origin)
    }

    /// Parses `.dockerignore` text with `dialect`'s rules; `origin` names the file in errors.
    pub fn parse_in(dialect: IgnoreDialect, text: &str, origin: &Path) -> Result<IgnoreRules, ContextError> {
        let mut rules = IgnoreRules {
            patterns: Vec::new(),
            origin: origin.to_path_buf(),
            dialect,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, line) in text.lines().enumerate() {
            if let Some(pattern) = read_line(line) {
                rules.push(&pattern, line, &format!("line {}", n + 1))?;
            }
        }
        Ok(rules)
    }

    /// Rules from patterns already read out of an ignore file (those BuildKit's
    /// frontend asks a session to leave out), in `dialect`; `origin` names them in errors.
    pub fn from_patterns(dialect: IgnoreDialect, patterns: &[String], origin: &Path) -> Result<IgnoreRules, ContextError> {
        let mut rules = IgnoreRules {
            patterns: Vec::new(),
            origin: origin.to_path_buf(),
            dialect,
        };
        for (n, pattern) in patterns.iter().enumerate() {
            if !pattern.trim().is_empty() {
                rules.push(pattern, pattern, &format!("exclude pattern {} the engine asked for", n + 1))?;
            }
        }
        Ok(rules)
    }

    /// The dialect the rules were read in.
    pub fn dialect(&self) -> IgnoreDialect {
        self.dialect
    }

    /// Compiles one pattern as Docker's matcher does; `line` is quoted in errors, `at` says where it was written.
    /// (Docker 23's matcher compiles a pattern when it first compares a path and then fails the walk; here a
    /// pattern it cannot compile is an error at once.)
    fn push(&mut self, pattern: &str, line: &str, at: &str) -> Result<(), ContextError> {
        let bad = |reason: &str| ContextError::BadPattern {
            file: self.origin.clone(),
            at: at.to_string(),
            pattern: line.to_string(),
            reason: reason.to_string(),
        };
        let cleaned = go_clean(pattern.trim());
        let (exclusion, text) = match cleaned.strip_prefix('!') {
            Some("") => return Err(bad("a lone `!` re-includes nothing")),
            Some(rest) => (true, rest.to_string()),
            None => (false, cleaned),
        };
        if !is_valid_glob(&text) {
            return Err(bad("it is not a valid glob (an unclosed `[`, an empty class or a trailing `\\`)"));
        }
        let regex = |go: &str| {
            rust_regex(go)
                .and_then(|re| Regex::new(&re).ok())
                .map(Matcher::Regex)
                .ok_or_else(|| bad("Docker turns it into an invalid regular expression"))
        };
        let matcher = match self.dialect {
            IgnoreDialect::Docker20 => regex(&go_regex(&text))?,
            IgnoreDialect::Docker23 => match compile_docker23(&text) {
                Compiled::Regex(go) => regex(&go)?,
                Compiled::Exact => Matcher::Exact(text.clone()),
                Compiled::Prefix => Matcher::Prefix(text[..text.len() - 2].to_string()),
                Compiled::Suffix => Matcher::Suffix(text[2..].to_string()),
            },
        };
        self.patterns.push(Pattern {
            elements: text.split('/').count(),
            text,
            matcher,
            exclusion,
        });
        Ok(())
    }

    /// Whether `rel` (a `/`-separated path relative to the context root), asked
    /// about alone, is left out: in Docker 20.10 a pattern matches it or its
    /// leading folders with as many elements as the pattern has; since Docker 23
    /// a pattern matches it or any of its folders (what the legacy engine asks
    /// of the Dockerfile and `.dockerignore` it received).
    pub fn is_excluded(&self, rel: &str) -> bool {
        match self.dialect {
            IgnoreDialect::Docker20 => self.matches_leading_folders(rel),
            IgnoreDialect::Docker23 => self.matches_or_a_folder_matches(rel),
        }
    }

    /// `Matches` in both dialects: a pattern matches `rel` or the leading folders with as many elements as it has.
    fn matches_leading_folders(&self, rel: &str) -> bool {
        let file = go_clean(rel);
        if file == "." {
            return false;
        }
        let parent = match file.rfind('/') {
            Some(i) => &file[..i],
            None => ".",
        };
        let parent_elements: Vec<&str> = parent.split('/').collect();
        let mut excluded = false;
        for p in &self.patterns {
            let mut hit = p.matcher.is_match(&file);
            if !hit && parent != "." && p.elements <= parent_elements.len() {
                hit = p.matcher.is_match(&parent_elements[..p.elements].join("/"));
            }
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// `MatchesOrParentMatches`: a pattern matches `rel` or any of its folders.
    fn matches_or_a_folder_matches(&self, rel: &str) -> bool {
        let file = go_clean(rel);
        if file == "." {
            return false;
        }
        // The last pattern that matches decides.
        let last = self.patterns.iter().rev().find(|p| p.matcher.is_match(&file) || leading_folders(&file).any(|folder| p.matcher.is_match(folder)));
        last.is_some_and(|p| !p.exclusion)
    }

    /// How the CLI's walk (the legacy tar or BuildKit's sync) judges `rel`,
    /// given the judgement of the folder holding it (`None` at the top).
    /// Docker 20.10's walks ask `is_excluded`; Docker 23's carry each
    /// pattern's match down from the folder (`MatchesUsingParentResults`).
    pub fn judge(&self, rel: &str, folder: Option<&WalkJudgement>) -> WalkJudgement {
        if self.dialect == IgnoreDialect::Docker20 {
            return WalkJudgement {
                excluded: self.is_excluded(rel),
                matched: Vec::new(),
            };
        }
        let file = go_clean(rel);
        let inherited = folder.map(|f| f.matched.as_slice()).filter(|m| m.len() == self.patterns.len() && !m.is_empty());
        let mut judgement = WalkJudgement {
            excluded: false,
            matched: vec![false; self.patterns.len()],
        };
        if file == "." {
            return judgement;
        }
        for (i, p) in self.patterns.iter().enumerate() {
            let mut hit = inherited.is_some_and(|m| m[i]);
            if !hit {
                // Tried only where it could change the outcome; a pattern not tried is not carried down.
                if p.exclusion != judgement.excluded {
                    continue;
                }
                hit = p.matcher.is_match(&file) || (inherited.is_none() && leading_folders(&file).any(|folder| p.matcher.is_match(folder)));
            }
            judgement.matched[i] = hit;
            if hit {
                judgement.excluded = !p.exclusion;
            }
        }
        judgement
    }

    /// How the walk judges `rel` from the top, each of its folders in turn.
    pub fn judge_path(&self, rel: &str) -> WalkJudgement {
        let file = go_clean(rel);
        let mut judgement: Option<WalkJudgement> = None;
        for folder in leading_folders(&file) {
            judgement = Some(self.judge(folder, judgement.as_ref()));
        }
        self.judge(&file, judgement.as_ref())
    }

    /// Whether the legacy CLI's tar must still enter the excluded folder
    /// `dir`: some `!` pattern's text lies below it (both dialects).
    pub fn may_re_include_below(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exclusion && format!("{}/", p.text).starts_with(&prefix))
    }

    /// Whether BuildKit's sync (fsutil since 2023, Docker 23 and later) enters
    /// the excluded folder `dir`: always when some `!` pattern, less a trailing
    /// `/**` or `/*`, holds a glob character; else when one lies below it.
    pub fn sync_enters(&self, dir: &str) -> bool {
        let trimmed = |p: &Pattern| -> String {
            let text = p.text.strip_suffix("/**").unwrap_or(&p.text);
            text.strip_suffix("/*").unwrap_or(text).to_string()
        };
        let re_includes: Vec<String> = self.patterns.iter().filter(|p| p.exclusion).map(trimmed).collect();
        if re_includes.iter().any(|text| text.contains(['*', '[', ']', '?', '^', '\\'])) {
            return true;
        }
        let prefix = format!("{dir}/");
        re_includes.iter().any(|text| format!("{text}/").starts_with(&prefix))
    }

    /// Re-includes `rel` with a trailing `!rel` when the rules exclude it, as
    /// the CLI does for the Dockerfile and `.dockerignore` (legacy builder);
    /// the CLI asks `Matches` in both dialects.
    pub fn keep(&mut self, rel: &str) -> Result<(), ContextError> {
        if self.matches_leading_folders(rel) {
            let pattern = format!("!{rel}");
            self.push(&pattern, &pattern, &format!("the re-include of `{rel}` the Docker CLI adds"))?;
        }
        Ok(())
    }
}

/// The folders leading to a cleaned path, shortest first (`a`, `a/b` for `a/b/c`).
fn leading_folders(file: &str) -> impl Iterator<Item = &str> {
    file.match_indices('/').map(move |(i, _)| &file[..i])
}

/// What Docker 23's matcher makes of a cleaned pattern.
#[derive(Debug, PartialEq, Eq)]
enum Compiled {
    /// Compared through this Go regular expression.
    Regex(String),
    /// Compared as text.
    Exact,
    /// Its text less the trailing `**` starts the path.
    Prefix,
    /// Its text less the leading `**` ends the path.
    Suffix,
}

/// How Docker 23's matcher compares one pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// moby/patternmatcher's `compile`: which comparison a pattern needs, and
/// the Go regular expression when it needs one.
fn compile_docker23(pattern: &str) -> Compiled {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut kind = Comparison::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                skip_double_star(&chars, &mut i);
                if i + 1 < chars.len() {
                    re.push_str("(.*/)?");
                    kind = Comparison::Regex;
                } else if kind == Comparison::Exact {
                    kind = Comparison::Prefix;
                } else {
                    re.push_str(".*");
                    kind = Comparison::Regex;
                }
                if first {
                    kind = Comparison::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Comparison::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Comparison::Regex;
            }
            c @ ('.' | '+' | '(' | ')' | '|' | '{' | '}' | '$') => {
                re.push('\\');
                re.push(c);
            }
            '\\' => match chars.get(i + 1) {
                Some(&next) => {
                    i += 1;
                    re.push('\\');
                    re.push(next);
                    kind = Comparison::Regex;
                }
                None => re.push('\\'),
            },
            c @ ('[' | ']') => {
                re.push(c);
                kind = Comparison::Regex;
            }
            c => re.push(c),
        }
        first = false;
        i += 1;
    }
    match kind {
        Comparison::Regex => {
            re.push('$');
            Compiled::Regex(re)
        }
        Comparison::Exact => Compiled::Exact,
        Comparison::Prefix => Compiled::Prefix,
        Comparison::Suffix => Compiled::Suffix,
    }
}

/// One line of a `.dockerignore` file as the reader passes it on: `None` for
/// comments and blank lines, else the cleaned pattern with its `!`.
fn read_line(line: &str) -> Option<String> {
    if line.starts_with('#') {
        return None;
    }
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (invert, body) = match line.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, line),
    };
    let mut body = if body.is_empty() { String::new() } else { go_clean(body) };
    if body.len() > 1 && body.starts_with('/') {
        body.remove(0);
    }
    Some(if invert { format!("!{body}") } else { body })
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for element in path.split('/') {
        match element {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// Whether Go's `filepath.Match` accepts `pattern` (Docker rejects the others).
fn is_valid_glob(pattern: &str) -> bool {
    let mut rest = pattern;
    while !rest.is_empty() {
        rest = rest.trim_start_matches('*');
        let (chunk, after) = split_chunk(rest);
        if !is_valid_chunk(chunk) {
            return false;
        }
        rest = after;
    }
    true
}

/// Splits off the text before the next `*` that is not inside a class.
fn split_chunk(pattern: &str) -> (&str, &str) {
    let bytes = pattern.as_bytes();
    let mut in_class = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    pattern.split_at(i)
}

/// The syntax checks of Go's `matchChunk`.
fn is_valid_chunk(chunk: &str) -> bool {
    let mut rest = chunk;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '[' => {
                rest = rest.strip_prefix('^').unwrap_or(rest);
                let mut ranges = 0;
                loop {
                    if ranges > 0 {
                        if let Some(after) = rest.strip_prefix(']') {
                            rest = after;
                            break;
                        }
                    }
                    let Some(after) = class_char(rest) else { return false };
                    rest = after;
                    if let Some(after) = rest.strip_prefix('-') {
                        let Some(after) = class_char(after) else { return false };
                        rest = after;
                    }
                    ranges += 1;
                }
            }
            '\\' => match rest.chars().next() {
                Some(escaped) => rest = &rest[escaped.len_utf8()..],
                None => return false,
            },
            _ => {}
        }
    }
    true
}

/// Go's `getEsc`: one (possibly escaped) class character, which must be followed by more text.
fn class_char(text: &str) -> Option<&str> {
    let text = match text.chars().next()? {
        '-' | ']' => return None,
        '\\' => &text[1..],
        _ => text,
    };
    let c = text.chars().next()?;
    let rest = &text[c.len_utf8()..];
    (!rest.is_empty()).then_some(rest)
}

/// Steps `i` from the first `*` of a `**` onto the second, and onto a `/` right after it.
fn skip_double_star(chars: &[char], i: &mut usize) {
    *i += 1;
    if chars.get(*i + 1) == Some(&'/') {
        *i += 1;
    }
}

/// The Go regular expression Docker 20.10 builds from a cleaned pattern.
fn go_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                skip_double_star(&chars, &mut i);
                re.push_str(if i + 1 == chars.len() { ".*" } else { "(.*/)?" });
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c @ ('.' | '$') => {
                re.push('\\');
                re.push(c);
            }
            '\\' => {
                re.push('\\');
                if let Some(&next) = chars.get(i + 1) {
                    i += 1;
                    re.push(next);
                }
            }
            c => re.push(c),
        }
        i += 1;
    }
    re.push('$');
    re
}

/// Rewrites a Go (RE2) regular expression into one the `regex` crate reads
/// the same way: literal `[`, `&`, `~` inside classes, literal `{` where Go
/// sees no repetition, escaped punctuation as the literal it is in Go, and
/// `\Q…\E` spelled out. `None` when Go would reject it too.
fn rust_regex(go: &str) -> Option<String> {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::new();
    let mut in_class = false;
    // Right after `[` or `[^`, where `]` is a literal.
    let mut class_start = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let next = *chars.get(i + 1)?;
            i += 2;
            if next == 'Q' {
                while i < chars.len() && !(chars[i] == '\\' && chars.get(i + 1) == Some(&'E')) {
                    push_literal(&mut out, chars[i], in_class);
                    i += 1;
                }
                i += 2;
            } else if next.is_ascii_alphanumeric() {
                out.push('\\');
                out.push(next);
                // `\p{Greek}`, `\x{41}`: copy the braces through.
                if matches!(next, 'p' | 'P' | 'x') && chars.get(i) == Some(&'{') {
                    while i < chars.len() {
                        out.push(chars[i]);
                        i += 1;
                        if chars[i - 1] == '}' {
                            break;
                        }
                    }
                }
            } else if next.is_ascii() {
                push_literal(&mut out, next, in_class);
            } else {
                return None;
            }
            class_start = false;
            continue;
        }
        if in_class {
            if c == ']' && !class_start {
                in_class = false;
                out.push(']');
            } else if c == '[' && chars.get(i + 1) == Some(&':') {
                let close = (i + 2..chars.len().saturating_sub(1)).find(|&j| chars[j] == ':' && chars[j + 1] == ']');
                match close {
                    Some(j) => {
                        out.extend(&chars[i..j + 2]);
                        i = j + 1;
                    }
                    None => out.push_str("\\["),
                }
            } else {
                // Nested classes and `&&`, `~~` set operations exist in Rust classes only.
                if matches!(c, '[' | '&' | '~') {
                    out.push('\\');
                }
                out.push(c);
            }
            class_start = false;
        } else if c == '[' {
            in_class = true;
            class_start = true;
            out.push('[');
            if chars.get(i + 1) == Some(&'^') {
                out.push('^');
                i += 1;
            }
        } else if c == '{' {
            let end = repetition_end(&chars[i..]);
            match end {
                Some(len) => {
                    out.extend(&chars[i..i + len]);
                    i += len - 1;
                }
                None => out.push_str("\\{"),
            }
        } else if c == '}' {
            out.push_str("\\}");
        } else {
            out.push(c);
        }
        i += 1;
    }
    Some(out)
}

/// Pushes `c` so that it means itself.
fn push_literal(out: &mut String, c: char, in_class: bool) {
    let special = if in_class { "[]\\^-&~" } else { "\\.+*?()|[]{}^$#&-~" };
    if special.contains(c) {
        out.push('\\');
    }
    out.push(c);
}

/// The length of a `{n}`, `{n,}` or `{n,m}` repetition at the start of `chars`.
fn repetition_end(chars: &[char]) -> Option<usize> {
    let close = chars.iter().position(|&c| c == '}')?;
    let inner: String = chars[1..close].iter().collect();
    let (low, high) = match inner.split_once(',') {
        Some((low, high)) => (low, Some(high)),
        None => (inner.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    (digits(low) && high.is_none_or(|h| h.is_empty() || digits(h))).then_some(close + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn a_pattern_excludes_a_folder_and_everything_in_it() {
        let r = rules(".git\n");
        assert!(r.is_excluded(".git"));
        assert!(r.is_excluded(".git/objects/ab/cdef"));
        assert!(!r.is_excluded("src/.git"));
    }

    #[test]
    fn star_stays_within_one_element_and_double_star_spans_many() {
        let r = rules("*.md\n**/*.tmp\n");
        assert!(r.is_excluded("README.md"));
        assert!(!r.is_excluded("docs/guide.md"));
        assert!(r.is_excluded("a.tmp"));
        assert!(r.is_excluded("a/b/c.tmp"));
    }

    #[test]
    fn a_pattern_matches_only_the_leading_folders_with_as_many_elements_as_it_has() {
        let r = rules("a/*\n");
        assert!(r.is_excluded("a/b/c"), "a/* matches the folder a/b, so a/b/c");
        let r = rules("**/x\n");
        assert!(r.is_excluded("a/b/x"));
        assert!(!r.is_excluded("a/b/x/y"), "`**/x` has two elements: only `a/b` is compared");
        assert!(r.is_excluded("a/x/y"));
    }

    #[test]
    fn double_star_in_the_middle_needs_a_slash_after_it() {
        let r = rules("a**b\n");
        assert!(r.is_excluded("ab"));
        assert!(r.is_excluded("a/c/b"));
        assert!(!r.is_excluded("acb"));
    }

    #[test]
    fn the_last_matching_pattern_wins_and_bang_re_includes() {
        let r = rules("*.md\n!README.md\n");
        assert!(r.is_excluded("CHANGES.md"));
        assert!(!r.is_excluded("README.md"));
        let r = rules("!README.md\n*.md\n");
        assert!(r.is_excluded("README.md"));
    }

    #[test]
    fn leading_slashes_dots_and_parents_are_cleaned_like_go_does() {
        let r = rules("/build/./out\n");
        assert!(r.is_excluded("build/out/x"));
        assert!(!r.is_excluded("build/in"));
        let r = rules("a/../b\n");
        assert!(r.is_excluded("b"));
        let r = rules("../b\n");
        assert!(!r.is_excluded("b"), "a leading `..` stays and matches nothing");
        let r = rules("/../b\n");
        assert!(r.is_excluded("b"), "`/..` cleans to `/`");
    }

    #[test]
    fn only_a_hash_in_the_first_column_starts_a_comment_and_spaces_around_are_dropped() {
        let r = rules("# a.txt\n #b.txt\n  c.txt   \n!  c.txt\n\td.txt\t\r\n");
        assert!(!r.is_excluded("a.txt"));
        assert!(!r.is_excluded("# a.txt"));
        assert!(r.is_excluded("#b.txt"));
        assert!(!r.is_excluded("c.txt"));
        assert!(r.is_excluded("d.txt"));
    }

    #[test]
    fn question_marks_and_classes_match_single_characters() {
        let r = rules("file?.txt\nlog[0-9]\nx[^a]\n");
        assert!(r.is_excluded("file1.txt"));
        assert!(!r.is_excluded("file10.txt"));
        assert!(!r.is_excluded("file/.txt"));
        assert!(r.is_excluded("log7"));
        assert!(!r.is_excluded("logx"));
        assert!(r.is_excluded("xb"));
        assert!(!r.is_excluded("xa"));
    }

    #[test]
    fn other_characters_keep_their_regular_expression_meaning() {
        let r = rules("a+b\nf(1).txt\nx|y\n");
        assert!(r.is_excluded("aab"), "`+` repeats");
        assert!(!r.is_excluded("a+b"));
        assert!(r.is_excluded("f1.txt"), "`(` groups");
        assert!(!r.is_excluded("f(1).txt"));
        assert!(r.is_excluded("x-anything"), "`|` splits `^x` from `y$`");
        assert!(r.is_excluded("anything-y"));
        let r = rules("a\\+b\nb{1\nc\\d\n");
        assert!(r.is_excluded("a+b"), "`\\` escapes");
        assert!(r.is_excluded("b{1"), "a `{{` that starts no repetition is literal");
        assert!(r.is_excluded("c7"), "`\\d` is a digit, as in Go");
    }

    #[test]
    fn classes_read_as_go_reads_them() {
        let r = rules("[[]x\n[a&&b]y\n[[:digit:]]z\n");
        assert!(r.is_excluded("[x"));
        assert!(r.is_excluded("&y"), "`&&` is no intersection in Go");
        assert!(r.is_excluded("by"));
        assert!(r.is_excluded("5z"));
    }

    #[test]
    fn excluded_folders_are_entered_only_for_re_includes_spelled_below_them() {
        let r = rules("a\n!a/keep\n");
        assert!(r.may_re_include_below("a"));
        assert!(!r.may_re_include_below("b"));
        let r = rules("a\n!**/keep\n");
        assert!(!r.may_re_include_below("a"));
    }

    #[test]
    fn keep_re_includes_a_file_only_when_it_is_excluded() {
        let mut r = rules("*\n");
        r.keep("Dockerfile").unwrap();
        assert!(!r.is_excluded("Dockerfile"));
        assert!(r.is_excluded("other"));
        let mut r = rules("x\n");
        r.keep("Dockerfile").unwrap();
        assert_eq!(r.patterns.len(), 1, "nothing to re-include");
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_file_and_the_line() {
        for bad in ["bad[", "[]a]", "x\\", "!", "! ", "[a-]", "a(b"] {
            let err = IgnoreRules::parse(&format!("ok\n{bad}\n"), Path::new("app/.dockerignore")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("app/.dockerignore: line 2: ") && text.contains(bad), "{bad}: {text}");
        }
    }

    #[test]
    fn a_byte_order_mark_and_carriage_returns_are_dropped() {
        let r = rules("\u{feff}a.txt\r\nb.txt\r\n");
        assert!(r.is_excluded("a.txt"));
        assert!(r.is_excluded("b.txt"));
    }

    /// The `.dockerignore` of the `tree` fixture of tests/engine/context_parity.rs.
    const TREE: &str = "\u{feff}bom\na\n!a/keep\n**/x\n!b/x/y\n!q/r/x/keep\n# c/keep\n #hash\nc/*\n!   c/keep\n*.md   \n\
         **/*.tmp\n/sub.tmp\n../d/e/o\nd/../trail.txt\ncrlf.txt\r\nf(1).txt\na+b\nlog[0-9]\ne\n!**/keep\nsecret\n!secret/keep\n\
         g**h\nx[[:digit:]]\n\\*star\n";

    fn rules_in(dialect: IgnoreDialect, text: &str) -> IgnoreRules {
        IgnoreRules::parse_in(dialect, text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn the_dialect_follows_the_engine_s_release() {
        for (version, dialect) in [
            ("20.10.24+dfsg1", IgnoreDialect::Docker20),
            ("19.03.15", IgnoreDialect::Docker20),
            ("23.0.0", IgnoreDialect::Docker23),
            ("26.1.5+dfsg1", IgnoreDialect::Docker23),
            ("v27.3.1", IgnoreDialect::Docker23),
            ("master-dockerproject-2024", IgnoreDialect::Docker23),
        ] {
            assert_eq!(IgnoreDialect::of_docker_version(version), dialect, "{version}");
        }
    }

    #[test]
    fn the_tree_fixture_s_walk_judgements_in_both_dialects() {
        let old = rules_in(IgnoreDialect::Docker20, TREE);
        let new = rules_in(IgnoreDialect::Docker23, TREE);
        // Measured with Docker 26.1's CLI: regular-expression characters are literal.
        for (path, excluded_by_20, excluded_by_23) in [
            ("aab", true, false),
            ("f1.txt", true, false),
            ("f(1).txt", false, true),
            // An excluded folder keeps everything below it but what a `!` pattern re-includes.
            ("q/r/x", true, true),
            ("q/r/x/keep", false, false),
            ("q/r/x/f", false, true),
            ("q/r/x/y/z", false, true),
            ("b/x/f", true, true),
            ("b/x/y/z", false, false),
            ("e/keep/k", false, false),
            ("e/other", true, true),
            ("a/keep/k", false, false),
            ("a/drop/d", true, true),
            ("c/keep", false, false),
            ("c/other", true, true),
            ("secret/keep", false, false),
            ("secret/s", true, true),
            ("g/i/h", true, true),
            ("gxh", false, false),
            ("x5", true, true),
            ("*star", true, true),
            ("bom", true, true),
            ("crlf.txt", true, true),
            ("trail.txt", true, true),
            ("d/e/o", false, false),
            ("#hash", true, true),
            ("n/m/deep.tmp", true, true),
            ("docs/guide.md", false, false),
        ] {
            assert_eq!(old.judge_path(path).excluded, excluded_by_20, "Docker 20.10: {path}");
            assert_eq!(new.judge_path(path).excluded, excluded_by_23, "Docker 23: {path}");
        }
    }

    #[test]
    fn the_tree_fixture_s_excluded_folders_are_entered_as_each_walk_enters_them() {
        let old = rules_in(IgnoreDialect::Docker20, TREE);
        let new = rules_in(IgnoreDialect::Docker23, TREE);
        for rules in [&old, &new] {
            // The legacy tar, both dialects: only for a `!` pattern spelled below the folder.
            assert!(rules.may_re_include_below("a") && rules.may_re_include_below("q/r/x") && rules.may_re_include_below("secret"));
            assert!(!rules.may_re_include_below("e") && !rules.may_re_include_below("q/r/x/y"));
        }
        // BuildKit's sync since Docker 23: `!**/keep` holds a glob character, so every excluded folder.
        assert!(new.sync_enters("e") && new.sync_enters("q/r/x/y") && new.sync_enters("a/drop"));
        let spelled = rules_in(IgnoreDialect::Docker23, "a\nb\n!a/keep/**\n");
        assert!(spelled.sync_enters("a") && spelled.sync_enters("a/keep") && !spelled.sync_enters("b"));
        assert!(!rules_in(IgnoreDialect::Docker23, "a\n").sync_enters("a"));
    }

    #[test]
    fn docker_23_compares_plain_patterns_as_text_prefixes_and_suffixes() {
        let r = rules_in(IgnoreDialect::Docker23, "a+b\nx|y\nb{1}\nlog**\n**.bak\n**/node_modules\nc\\d\n[ab]z\n");
        assert!(r.is_excluded("a+b") && !r.is_excluded("aab"));
        assert!(r.is_excluded("x|y") && !r.is_excluded("x-anything"));
        assert!(r.is_excluded("b{1}") && !r.is_excluded("b"));
        assert!(r.is_excluded("logs/today") && r.is_excluded("log"));
        assert!(r.is_excluded("deep/er/old.bak") && r.is_excluded("xbak.bak"));
        assert!(r.is_excluded("node_modules/x") && r.is_excluded("a/b/node_modules/x"));
        assert!(r.is_excluded("c7"), "`\\d` still reaches the regular expression");
        assert!(r.is_excluded("az") && !r.is_excluded("cz"));
        // `**x` is a suffix: it matches `ax`, where Docker 20.10's `^(.*/)?x$` does not.
        assert!(rules_in(IgnoreDialect::Docker23, "**x\n").is_excluded("ax"));
        assert!(!rules("**x\n").is_excluded("ax"));
        assert!(rules_in(IgnoreDialect::Docker23, "a(b\n").is_excluded("a(b"), "no longer an invalid regular expression");
    }

    #[test]
    fn docker_23_asks_alone_about_every_folder_and_walks_carry_matches_down() {
        let r = rules_in(IgnoreDialect::Docker23, "**/x\n");
        assert!(r.is_excluded("a/b/x/y"), "`**/x` matches the folder a/b/x");
        assert!(!rules("**/x\n").is_excluded("a/b/x/y"));
        // `a/b` then `!a`: asked alone, `a/b`'s folder matches `!a`; the walk never tries `!a` on `a` (nothing to re-include there).
        let r = rules_in(IgnoreDialect::Docker23, "a/b\n!a\n");
        assert!(!r.is_excluded("a/b"));
        assert!(r.judge_path("a/b").excluded);
        assert!(r.judge_path("a/b/c").excluded);
        assert!(!r.judge_path("a/c").excluded);
    }

    #[test]
    fn docker_23_s_re_include_of_the_dockerfile_asks_the_old_question() {
        // The CLI's `TrimBuildFilesFromExcludes` uses `Matches`: `**/x` (two elements) is compared with `a/b` only.
        let mut r = rules_in(IgnoreDialect::Docker23, "**/x\n");
        r.keep("a/b/x/Dockerfile").unwrap();
        assert_eq!(r.patterns.len(), 1);
        assert!(r.is_excluded("a/b/x/Dockerfile"));
        let mut r = rules_in(IgnoreDialect::Docker23, "a\n");
        r.keep("a/Dockerfile").unwrap();
        assert!(!r.judge_path("a/Dockerfile").excluded);
    }

    #[test]
    fn go_clean_matches_go() {
        for (input, cleaned) in [
            ("", "."),
            ("a//b/", "a/b"),
            ("./a", "a"),
            ("a/..", "."),
            ("../../a", "../../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/b/../../..", ".."),
        ] {
            assert_eq!(go_clean(input), cleaned, "{input}");
        }
    }
}
