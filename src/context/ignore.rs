//! `.dockerignore` files as Docker 20.10 reads and matches them (the CLI's walk, the daemon's check and BuildKit's sync use the same rules).
//!
//! The rules, learned from docker/cli 20.10 and moby 20.10 and checked against
//! `/usr/bin/docker build`:
//! - a line whose first character is `#` is a comment (` #x` is the pattern `#x`);
//!   surrounding white space is dropped; a leading `!` re-includes;
//! - each pattern is cleaned like Go's `filepath.Clean` (`a/./b/../c` is `a/c`,
//!   a leading `..` stays and then matches nothing) and a leading `/` is dropped;
//! - a pattern must be a valid Go `filepath.Match` pattern, then it is turned
//!   into a Go regular expression: `*` and `?` stay within one path element,
//!   `**` spans elements, `.` and `$` are literal, `\` escapes the next
//!   character, and every other character keeps its regular-expression meaning
//!   (so `[a-z]` is a class, and `+`, `(`, `|` are operators too);
//! - a path is matched against each pattern in order and the last match wins; a
//!   pattern also matches a path when it matches the path's leading folders
//!   with as many elements as the pattern has (`a/*` matches `a/b/c`, but
//!   `**/x` does not match `a/b/x/y`);
//! - an excluded folder is not walked, unless some `!` pattern's text starts
//!   with the folder's path (`!a/keep` opens `a`, `!**/keep` opens nothing).

use std::path::{Path, PathBuf};

use regex::Regex;

use super::ContextError;

/// One `.dockerignore` pattern, compiled.
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`, as Docker compares it with folder paths.
    text: String,
    /// How many path elements the pattern has.
    elements: usize,
    regex: Regex,
    /// A `!` pattern: a match re-includes.
    exclusion: bool,
}

/// The patterns of one `.dockerignore` file, in order.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
    origin: PathBuf,
}

impl IgnoreRules {
    /// Reads `path`; no file means no rules.
    pub fn read(path: &Path) -> Result<IgnoreRules, ContextError> {
        match std::fs::read(path) {
            Ok(bytes) => IgnoreRules::parse(&String::from_utf8_lossy(&bytes), path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IgnoreRules::default()),
            Err(source) => Err(ContextError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses `.dockerignore` text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<IgnoreRules, ContextError> {
        let mut rules = IgnoreRules {
            patterns: Vec::new(),
            origin: origin.to_path_buf(),
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, line) in text.lines().enumerate() {
            if let Some(pattern) = read_line(line) {
                rules.push(&pattern, line, &format!("line {}", n + 1))?;
            }
        }
        Ok(rules)
    }

    /// Compiles one pattern as Docker's matcher does; `line` is quoted in errors, `at` says where it was written.
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
        let regex = rust_regex(&go_regex(&text))
            .and_then(|re| Regex::new(&re).ok())
            .ok_or_else(|| bad("Docker turns it into an invalid regular expression"))?;
        self.patterns.push(Pattern {
            elements: text.split('/').count(),
            text,
            regex,
            exclusion,
        });
        Ok(())
    }

    /// Whether `rel` (a `/`-separated path relative to the context root) is left out.
    pub fn is_excluded(&self, rel: &str) -> bool {
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
            let mut hit = p.regex.is_match(&file);
            if !hit && parent != "." && p.elements <= parent_elements.len() {
                hit = p.regex.is_match(&parent_elements[..p.elements].join("/"));
            }
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether the walk must still enter the excluded folder `dir`: some `!`
    /// pattern's text lies below it.
    pub fn may_re_include_below(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exclusion && format!("{}/", p.text).starts_with(&prefix))
    }

    /// Re-includes `rel` with a trailing `!rel` when the rules exclude it, as
    /// the CLI does for the Dockerfile and `.dockerignore` (legacy builder).
    pub fn keep(&mut self, rel: &str) -> Result<(), ContextError> {
        if self.is_excluded(rel) {
            let pattern = format!("!{rel}");
            self.push(&pattern, &pattern, &format!("the re-include of `{rel}` the Docker CLI adds"))?;
        }
        Ok(())
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

/// The Go regular expression Docker 20.10 builds from a cleaned pattern.
fn go_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    i += 1;
                }
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
