//! Where something is written in a TOML file, so that every error about a scenario, suite or project file names its line.

/// One step of the way to a value: a key of a table, or an index into an array (of tables).
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    Key(&'a str),
    Index(usize),
}

/// The 1-based line where the value at `path` is written, when the text parses and holds it.
pub fn line_of(text: &str, path: &[At]) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    for at in path {
        item = match at {
            At::Key(key) => item.get(*key)?,
            At::Index(i) => item.get(*i)?,
        };
    }
    item.span().map(|span| line_at(text, span.start))
}

/// The line of `path`, else of the nearest enclosing value that has one, else (a top-level key that is missing) the last line.
pub fn line_near(text: &str, path: &[At]) -> usize {
    (1..=path.len()).rev().find_map(|n| line_of(text, &path[..n])).unwrap_or_else(|| last_line(text))
}

/// The 1-based line holding byte `offset` of `text` (offsets past the end count as the last line).
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count()
}

/// A message with its line breaks escaped, so that an error is one line whatever text of the file it quotes.
pub fn one_line(message: &str) -> String {
    message.replace('\r', "\\r").replace('\n', "\\n")
}

/// The number of the file's last line (1 for an empty file).
pub fn last_line(text: &str) -> usize {
    text.lines().count().max(1)
}

/// A TOML parse error as one line: `line N, column C: what is wrong`. An unknown
/// key, which the parser reports at the start of its table, is pointed at the
/// line where the key itself is written.
pub fn describe(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let at = e.span().map(|span| span.start.min(text.len()));
    let key = message.split("unknown field `").nth(1).and_then(|rest| rest.split('`').next());
    if let (Some(key), Some(start)) = (key, at) {
        let from = line_at(text, start) - 1;
        let found = text.lines().enumerate().skip(from).find_map(|(i, line)| {
            let t = line.trim_start().trim_start_matches(['{', ',', ' ']);
            let name = t.split(['=', ' ']).next().unwrap_or("");
            (name == key || line.contains(&format!(" {key} =")) || line.contains(&format!("{{{key} ="))).then_some(i + 1)
        });
        if let Some(line) = found {
            return format!("line {line}: unknown key `{key}`: {message}");
        }
    }
    match at {
        Some(start) => {
            let line = line_at(text, start);
            let line_start = text.as_bytes()[..start].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = text.get(line_start..start).map_or(1, |s| s.chars().count() + 1);
            format!("line {line}, column {column}: {message}")
        }
        None => format!("line {}: {message}", last_line(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"t\"\n[[step]]\nname = \"a\"\n[[step]]\nname = \"b\"\nchange = [\n  { kind = \"touch\", file = \"x\" },\n  { kind = \"touch\", file = \"y\" },\n]\n";

    #[test]
    fn values_in_arrays_of_tables_and_inline_tables_are_found_on_their_line() {
        assert_eq!(line_of(TEXT, &[At::Key("name")]), Some(1));
        assert_eq!(line_of(TEXT, &[At::Key("step"), At::Index(1), At::Key("name")]), Some(5));
        assert_eq!(line_of(TEXT, &[At::Key("step"), At::Index(1), At::Key("change"), At::Index(0)]), Some(7));
        assert_eq!(line_of(TEXT, &[At::Key("step"), At::Index(1), At::Key("change"), At::Index(1), At::Key("file")]), Some(8));
        assert_eq!(line_of(TEXT, &[At::Key("step"), At::Index(5)]), None);
        assert_eq!(line_near(TEXT, &[At::Key("step"), At::Index(1), At::Key("change"), At::Index(0), At::Key("mode")]), 7);
        assert_eq!(line_near(TEXT, &[At::Key("missing")]), 9, "a missing key is where it would be added: the end");
    }

    #[test]
    fn parse_errors_are_one_line_with_line_and_column() {
        let text = "name = \"t\"\ndescription = 3 3\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let d = describe(text, &e);
        assert!(d.starts_with("line 2, column "), "{d}");
        assert!(!d.contains('\n'), "{d}");
    }
}
