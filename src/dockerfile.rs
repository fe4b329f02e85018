//! A Dockerfile read as stages and instructions, so both builders' step reports map onto the same names; and the line edits scenarios make to it.

use serde::{Deserialize, Serialize};

/// One instruction of a Dockerfile (continuation lines joined).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    /// The stage's `AS` name, or `stage-N` for an unnamed stage (BuildKit's naming); empty for `ARG`s before the first `FROM`.
    pub stage: String,
    /// The keyword in capitals (`FROM`, `RUN`, `COPY`, ...).
    pub keyword: String,
    /// The instruction as written: a one-line instruction verbatim (trimmed);
    /// continuation lines trimmed and joined with one space, their `\\` removed.
    pub text: String,
    /// The 1-based line of the Dockerfile where the instruction starts.
    pub line: usize,
}

/// The instructions of a Dockerfile in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerfileModel {
    pub instructions: Vec<Instruction>,
}

/// The heredocs an instruction opens, in order: `<<EOF`, `<<-EOF` (tabs stripped before the terminator),
/// `<<"EOF"` or `<<'EOF'`; `<<<` is no heredoc.
fn heredoc_words(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("<<") {
        let mut after = &rest[i + 2..];
        if after.starts_with('<') {
            rest = after.trim_start_matches('<');
            continue;
        }
        let strip_tabs = after.starts_with('-');
        after = after.strip_prefix('-').unwrap_or(after);
        let quoted = after.strip_prefix('"').or_else(|| after.strip_prefix('\''));
        let body = quoted.unwrap_or(after);
        let len = body.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))).unwrap_or(body.len());
        if len > 0 {
            out.push((body[..len].to_string(), strip_tabs));
        }
        rest = &body[len..];
    }
    out
}

impl DockerfileModel {
    pub fn parse(text: &str) -> DockerfileModel {
        let mut instructions: Vec<Instruction> = Vec::new();
        let mut stage = String::new();
        let mut stage_index = 0usize;
        let mut pending: Vec<&str> = Vec::new();
        let mut first_line = 0usize;
        // The heredocs the last instruction opened and whose terminator has not come yet (word, `<<-`).
        let mut heredocs: std::collections::VecDeque<(String, bool)> = Default::default();
        for (n, raw) in text.lines().enumerate() {
            if let Some((word, strip_tabs)) = heredocs.front().cloned() {
                // A heredoc's body belongs to its instruction, comments and blank lines included.
                let body = if strip_tabs { raw.trim_start_matches('\t') } else { raw };
                if body == word {
                    heredocs.pop_front();
                }
                if let Some(last) = instructions.last_mut() {
                    last.text.push('\n');
                    last.text.push_str(raw);
                }
                continue;
            }
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue; // blank lines and comments, also inside a continued instruction
            }
            if pending.is_empty() {
                first_line = n + 1;
            }
            if let Some(body) = line.strip_suffix('\\') {
                pending.push(body.trim_end());
                continue;
            }
            pending.push(line);
            let text = std::mem::take(&mut pending).into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ");
            let keyword = text.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            if keyword == "FROM" {
                let words: Vec<&str> = text.split_whitespace().collect();
                stage = match words.iter().position(|w| w.eq_ignore_ascii_case("AS")) {
                    Some(i) if i + 1 < words.len() => words[i + 1].to_string(),
                    _ => format!("stage-{stage_index}"),
                };
                stage_index += 1;
            }
            if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
                heredocs.extend(heredoc_words(&text));
            }
            instructions.push(Instruction {
                stage: stage.clone(),
                keyword,
                text,
                line: first_line,
            });
        }
        DockerfileModel { instructions }
    }

    /// The `RUN --mount=type=secret` and `--mount=type=ssh` mounts: (line, `secret` or `ssh`, the id or `default`).
    pub fn session_mounts(&self) -> Vec<(usize, &'static str, String)> {
        let mut out = Vec::new();
        for ins in self.instructions.iter().filter(|i| i.keyword == "RUN") {
            for flag in ins.text.split_whitespace().skip(1).take_while(|w| w.starts_with("--")) {
                let Some(spec) = flag.strip_prefix("--mount=") else { continue };
                let fields: Vec<(&str, &str)> = spec.split(',').filter_map(|f| f.split_once('=')).collect();
                let field = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| v.trim_matches('"').to_string());
                let kind = match field("type").as_deref() {
                    Some("secret") => "secret",
                    Some("ssh") => "ssh",
                    _ => continue,
                };
                out.push((ins.line, kind, field("id").unwrap_or_else(|| "default".to_string())));
            }
        }
        out
    }

    /// The instruction the legacy builder calls `Step n/M` (1-based over the whole file).
    pub fn legacy_step(&self, n: usize) -> Option<&Instruction> {
        n.checked_sub(1).and_then(|i| self.instructions.get(i))
    }

    /// The instruction BuildKit calls `[stage i/n]`: BuildKit numbers only
    /// the instructions that make a vertex (FROM, RUN, COPY, ADD, WORKDIR).
    /// A label without a stage name (`[2/5]`) comes from a Dockerfile of one stage, whatever its name.
    pub fn buildkit_step(&self, stage: &str, i: usize) -> Option<&Instruction> {
        let stages: Vec<&str> = self.instructions.iter().filter(|ins| ins.keyword == "FROM").map(|ins| ins.stage.as_str()).collect();
        let stage = match stages.as_slice() {
            [only] if stage == UNNAMED_STAGE => only,
            _ => stage,
        };
        self.instructions
            .iter()
            .filter(|ins| ins.stage == stage && makes_vertex(ins))
            .nth(i.checked_sub(1)?)
    }

    /// The first instruction that only BuildKit can run (`RUN --mount`, `RUN --network`, `RUN --security`, `COPY --link`, heredocs), if any.
    pub fn buildkit_only_feature(&self) -> Option<String> {
        self.instructions.iter().find_map(|ins| {
            let flags: Vec<&str> = ins.text.split_whitespace().skip(1).take_while(|w| w.starts_with("--")).collect();
            let bk = match ins.keyword.as_str() {
                "RUN" => flags.iter().find(|f| f.starts_with("--mount") || f.starts_with("--network") || f.starts_with("--security")),
                "COPY" | "ADD" => flags.iter().find(|f| f.starts_with("--link")),
                _ => None,
            };
            bk.map(|f| format!("`{}` ({})", ins.text, f.split('=').next().unwrap_or(f)))
                .or_else(|| ins.text.contains("<<").then(|| format!("the heredoc in `{}`", ins.text)))
        })
    }

    /// The stages whose `RUN`s call the go command while the stage declares no
    /// `ARG GOPROXY` (a global one counts only when the stage declares it again,
    /// as Docker scopes ARGs) and does not start from a stage that does (whose
    /// downloaded modules it inherits).
    pub fn stages_running_go_without_goproxy(&self) -> Vec<String> {
        let declares = |stage: &str| {
            self.instructions.iter().any(|a| {
                a.stage == stage && a.keyword == "ARG" && a.text.split_whitespace().nth(1).is_some_and(|n| n == "GOPROXY" || n.starts_with("GOPROXY="))
            })
        };
        let base = |stage: &str| {
            self.instructions
                .iter()
                .find(|i| i.stage == stage && i.keyword == "FROM")
                .and_then(|i| i.text.split_whitespace().skip(1).find(|w| !w.starts_with("--")).map(str::to_string))
        };
        let mut stages: Vec<String> = Vec::new();
        for ins in &self.instructions {
            let runs_go = ins.keyword == "RUN" && ins.text.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|').any(|w| w == "go");
            if !runs_go || stages.contains(&ins.stage) || declares(&ins.stage) {
                continue;
            }
            let inherits = base(&ins.stage).is_some_and(|b| b != ins.stage && declares(&b));
            if !inherits {
                stages.push(ins.stage.clone());
            }
        }
        stages
    }

    /// Position of an instruction in the file, for ordering step reports.
    pub fn position(&self, ins: &Instruction) -> Option<usize> {
        self.instructions.iter().position(|x| x == ins)
    }
}

/// `FROM scratch` makes no vertex; neither do metadata instructions (ARG, ENV, USER, ...).
fn makes_vertex(ins: &Instruction) -> bool {
    match ins.keyword.as_str() {
        "FROM" => ins.text.split_whitespace().nth(1).is_some_and(|image| image != "scratch"),
        k => matches!(k, "RUN" | "COPY" | "ADD" | "WORKDIR"),
    }
}

/// What a BuildKit label without a stage name is read as.
const UNNAMED_STAGE: &str = "stage-0";

/// Splits a BuildKit vertex name `[build 4/6] RUN go mod download` into (`build`, 4, `RUN go mod download`).
/// A Dockerfile's `# syntax=` parser directive: the frontend image BuildKit pulls to read the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxDirective {
    /// 1-based.
    pub line: usize,
    /// The line as written (`# syntax = docker/dockerfile:1.3`).
    pub text: String,
    /// The frontend image it names.
    pub image: String,
}

/// The parser directives at the top of a Dockerfile (`# key=value` lines before any other line), with their 0-based
/// line indexes and lower-cased keys.
fn directives(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim().strip_prefix('#') else { break };
        let Some((key, value)) = rest.split_once('=') else { break };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            break;
        }
        out.push((i, key.to_ascii_lowercase(), value.trim().to_string()));
    }
    out
}

/// The `# syntax=` directive of a Dockerfile's text, if it has one.
pub fn syntax_directive(text: &str) -> Option<SyntaxDirective> {
    let (i, _, image) = directives(text).into_iter().find(|(_, key, _)| key == "syntax")?;
    Some(SyntaxDirective { line: i + 1, text: text.lines().nth(i).unwrap_or_default().trim().to_string(), image })
}

/// The text without its `# syntax=` directive, the other directives kept as directives and every instruction on
/// its own line number (a comment after the directives takes the removed line's place); `None` without one.
pub fn without_syntax_directive(text: &str) -> Option<String> {
    let found = directives(text);
    let (index, _, _) = found.iter().find(|(_, key, _)| key == "syntax")?.clone();
    let last = found.last().map_or(index, |(i, _, _)| *i);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let dropped = lines.remove(index);
    lines.insert(last, format!("# layerbench --frontend builtin dropped: {}", dropped.trim().trim_start_matches('#').trim()));
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Some(out)
}

pub fn split_buildkit_name(name: &str) -> Option<(String, usize, String)> {
    let rest = name.strip_prefix('[')?;
    let (label, text) = rest.split_once("] ")?;
    // A Dockerfile with one unnamed stage gives `[2/5]`, with no stage name.
    let (stage, frac) = label.rsplit_once(' ').unwrap_or((UNNAMED_STAGE, label));
    let (i, _) = frac.split_once('/')?;
    Some((stage.to_string(), i.parse().ok()?, text.trim().to_string()))
}

/// Splits a legacy step line `Step 4/11 : RUN go mod download` into (4, `RUN go mod download`).
pub fn split_legacy_step(line: &str) -> Option<(usize, String)> {
    let rest = line.strip_prefix("Step ")?;
    let (frac, text) = rest.split_once(" : ")?;
    let (n, _) = frac.split_once('/')?;
    Some((n.trim().parse().ok()?, text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYERED: &str = "# comment\nFROM golang:1.23 AS build\nARG GOPROXY\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod \\\n    download\nCOPY . .\nRUN go build -o /out/app .\n\nFROM scratch\nCOPY --from=build /out/app /app\nUSER 65532\nENTRYPOINT [\"/app\"]\n";

    #[test]
    fn stages_and_continuations_are_read() {
        let m = DockerfileModel::parse(LAYERED);
        assert_eq!(m.instructions.len(), 11);
        assert_eq!(m.instructions[4].text, "RUN go mod download");
        assert_eq!(m.instructions[4].line, 6, "an instruction's line is where it starts");
        assert_eq!(m.instructions[5].line, 8);
        assert_eq!(m.instructions[4].stage, "build");
        assert_eq!(m.instructions[7].stage, "stage-1");
    }

    #[test]
    fn instructions_keep_their_text_as_written() {
        let m = DockerfileModel::parse("FROM golang:1.23\nARG V=1\nRUN  echo  \"$V\"   \\\n  && true\n");
        assert_eq!(m.instructions[2].text, "RUN  echo  \"$V\" && true");
        assert_eq!(m.instructions[2].line, 3);
        let twice = DockerfileModel::parse("FROM x\nRUN true\nRUN true\n");
        assert_eq!(twice.position(&twice.instructions[2]), Some(2), "equal texts on different lines are different steps");
    }

    #[test]
    fn both_builders_step_numbers_map_to_the_same_instruction() {
        let m = DockerfileModel::parse(LAYERED);
        let bk = m.buildkit_step("build", 4).unwrap();
        let legacy = m.legacy_step(5).unwrap();
        assert_eq!(bk, legacy);
        assert_eq!(bk.text, "RUN go mod download");
        assert_eq!(m.buildkit_step("stage-1", 1).unwrap().keyword, "COPY", "FROM scratch makes no vertex");
    }

    #[test]
    fn stages_that_run_go_without_the_proxy_argument_are_found() {
        assert!(DockerfileModel::parse(LAYERED).stages_running_go_without_goproxy().is_empty());
        let m = DockerfileModel::parse("ARG GOPROXY\nFROM golang:1.23 AS build\nRUN go build .\nFROM golang:1.23 AS test\nARG GOPROXY\nRUN cd x && go test ./...\nFROM scratch\nRUN echo gopher\n");
        assert_eq!(m.stages_running_go_without_goproxy(), ["build"]);
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in ["sample-go-app/dockerfiles", "tests/fixtures/tiny-app/dockerfiles", "tests/fixtures/other-app/build"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|x| x == "Dockerfile") {
                    let m = DockerfileModel::parse(&std::fs::read_to_string(&path).unwrap());
                    assert!(m.stages_running_go_without_goproxy().is_empty(), "{}", path.display());
                }
            }
        }
    }

    #[test]
    fn a_single_named_stage_maps_buildkit_labels_without_a_stage_name() {
        let m = DockerfileModel::parse("FROM golang:1.23 AS final\nWORKDIR /src\nCOPY . .\nRUN go build .\n");
        assert_eq!(m.buildkit_step("stage-0", 3).unwrap().text, "COPY . .");
    }

    #[test]
    fn buildkit_only_features_are_found() {
        let m = DockerfileModel::parse("FROM x\nRUN --mount=type=cache,target=/root/.cache/go-build go build .\n");
        assert!(m.buildkit_only_feature().unwrap().contains("--mount"));
        assert!(DockerfileModel::parse(LAYERED).buildkit_only_feature().is_none());
    }

    #[test]
    fn step_names_are_split() {
        assert_eq!(
            split_buildkit_name("[build 4/6] RUN go mod download"),
            Some(("build".into(), 4, "RUN go mod download".into()))
        );
        assert_eq!(split_buildkit_name("[internal] load .dockerignore"), None);
        assert_eq!(split_buildkit_name("[3/5] COPY . ."), Some(("stage-0".into(), 3, "COPY . .".into())));
        assert_eq!(split_legacy_step("Step 4/11 : RUN go mod download"), Some((4, "RUN go mod download".into())));
    }

    #[test]
    fn a_syntax_directive_is_found_at_the_top_only_and_dropped_keeping_lines_and_other_directives() {
        let text = "# syntax = docker/dockerfile:1.3\n# escape=`\nFROM golang:1.23\nRUN make build\n";
        let found = syntax_directive(text).unwrap();
        assert_eq!((found.line, found.image.as_str(), found.text.as_str()), (1, "docker/dockerfile:1.3", "# syntax = docker/dockerfile:1.3"));
        let dropped = without_syntax_directive(text).unwrap();
        assert_eq!(dropped, "# escape=`\n# layerbench --frontend builtin dropped: syntax = docker/dockerfile:1.3\nFROM golang:1.23\nRUN make build\n");
        assert_eq!(syntax_directive(&dropped), None);
        assert_eq!(directives(&dropped).first().map(|(_, k, v)| (k.as_str(), v.as_str())), Some(("escape", "`")));
        // After a comment, an instruction or a blank line, `# syntax=` is a comment.
        assert_eq!(syntax_directive("# build the service\n# syntax=docker/dockerfile:1\nFROM x\n"), None);
        assert_eq!(syntax_directive("FROM x\n# syntax=docker/dockerfile:1\n"), None);
        assert_eq!(without_syntax_directive("FROM x\n"), None);
        assert_eq!(syntax_directive("#SYNTAX=docker/dockerfile:1.4\nFROM x").map(|d| d.image), Some("docker/dockerfile:1.4".to_string()));
    }

    #[test]
    fn a_heredoc_body_belongs_to_its_instruction() {
        let m = DockerfileModel::parse("FROM golang:1.23 AS build\nRUN <<EOF\nset -e\n# not a comment here\n\ngo build .\nEOF\nCOPY <<-\"conf\" <<two.txt /etc/\n\tkey=1\n\tconf\nsecond\ntwo.txt\nRUN echo a <<< b\nUSER 1\n");
        let kinds: Vec<(&str, usize)> = m.instructions.iter().map(|i| (i.keyword.as_str(), i.line)).collect();
        assert_eq!(kinds, [("FROM", 1), ("RUN", 2), ("COPY", 8), ("RUN", 13), ("USER", 14)]);
        assert_eq!(m.instructions[1].text, "RUN <<EOF\nset -e\n# not a comment here\n\ngo build .\nEOF");
        assert!(m.instructions[2].text.ends_with("second\ntwo.txt"), "{}", m.instructions[2].text);
        assert_eq!(heredoc_words("RUN cat <<-'END' >x"), [("END".to_string(), true)]);
    }

    #[test]
    fn secret_and_ssh_mounts_are_found() {
        let m = DockerfileModel::parse("FROM golang:1.23\nRUN --mount=type=secret,id=netrc,target=/root/.netrc --mount=type=cache,target=/go/pkg/mod go mod download\nRUN --mount=type=ssh git clone git@example.org:x.git\n");
        assert_eq!(m.session_mounts(), [(2, "secret", "netrc".to_string()), (3, "ssh", "default".to_string())]);
    }
}
