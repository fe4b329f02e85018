//! Scratch workspaces (the only user of git2): a copy of the app in a fresh git repository, where a scenario's changes are applied and committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use walkdir::WalkDir;

use crate::dockerfile::DockerfileModel;
use crate::gomod::modfile;
use crate::gomod::sum::{self, BumpError};
use crate::gomod::ModuleVersions;
use crate::roles::{self, RoleError, FIRST_DIRECT_DEPENDENCY};
use crate::scenario::{self, Change, NEXT_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("git in the scratch copy {path}: failed to {action}: {source}")]
    Git {
        action: &'static str,
        path: PathBuf,
        source: git2::Error,
    },
    #[error("{at}: {file}: the pattern `{pattern}` does not occur")]
    PatternNotFound { at: String, file: PathBuf, pattern: String },
    #[error("{at}: {file}: no line contains `{line}`")]
    LineNotFound { at: String, file: PathBuf, line: String },
    #[error("{at}: cannot resolve the role `{role}` in the app {app}: {source}")]
    Role {
        at: String,
        role: String,
        app: PathBuf,
        source: RoleError,
    },
    #[error("{at}: {file} {problem}")]
    BadPath { at: String, file: String, problem: String },
    #[error("copying {from} into a scratch workspace was interrupted")]
    Interrupted { from: PathBuf },
    #[error("{at}: failed to {action} {path}: {source}")]
    Change {
        at: String,
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{at}: {source}")]
    Bump { at: String, source: Box<BumpError> },
    #[error("the app {app} and the build context {context} must be the same folder or one inside the other")]
    Unrelated { app: PathBuf, context: PathBuf },
}

/// What a workspace's errors name besides the scratch copy: the app it was
/// copied from and the scenario being applied (unnamed until `with_origin`).
#[derive(Debug, Clone, Default)]
struct Origin {
    app: Option<PathBuf>,
    scenario: Option<String>,
}

/// A scratch copy of an app in its own git repository.
pub struct Workspace {
    /// The app (the Go module root) inside the copy; scenario paths are relative to it.
    root: PathBuf,
    /// The copied tree: the app, or the build context when the app lies inside it. The git repository.
    tree: PathBuf,
    /// The build context inside the copy.
    context: PathBuf,
    /// The Dockerfile: inside the copy, or a copy beside it when the original lies outside the copied tree.
    dockerfile: PathBuf,
    repo: git2::Repository,
    origin: Origin,
}

/// What a step's changes did beyond the files: build arguments to set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub build_args: Vec<(String, String)>,
    /// `(module, version)` pairs the module proxy should start serving.
    pub published: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// Where the app, its build context and the Dockerfile are, for a workspace to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The folder to copy (the app, or the context when it holds the app).
    pub source: PathBuf,
    /// The app, relative to `source`.
    pub app: PathBuf,
    /// The build context, relative to `source`.
    pub context: PathBuf,
    /// The Dockerfile: relative to `source` when inside it, else absolute (it is then copied beside the tree).
    pub dockerfile: PathBuf,
}

impl Layout {
    /// The layout of `app` built from `context` with `dockerfile` (all absolute or relative to the current folder).
    /// The app and the context must be the same folder or one inside the other.
    pub fn new(app: &Path, context: &Path, dockerfile: &Path) -> Result<Layout, WorkspaceError> {
        let abs = |p: &Path| -> Result<PathBuf, WorkspaceError> {
            std::fs::canonicalize(p).map_err(io("find", p))
        };
        let (app, context, dockerfile) = (abs(app)?, abs(context)?, abs(dockerfile)?);
        let source = if app.starts_with(&context) {
            context.clone()
        } else if context.starts_with(&app) {
            app.clone()
        } else {
            return Err(WorkspaceError::Unrelated { app, context });
        };
        let rel = |p: &Path| p.strip_prefix(&source).map(Path::to_path_buf).unwrap_or_default();
        let dockerfile = match dockerfile.strip_prefix(&source) {
            Ok(inside) => inside.to_path_buf(),
            Err(_) => dockerfile.clone(),
        };
        Ok(Layout { app: rel(&app), context: rel(&context), dockerfile, source })
    }
}

impl Workspace {
    /// Copies `layout.source` into `tree` (which must not exist; `.git`
    /// folders are not copied), and a Dockerfile from outside it (with its
    /// own `<name>.dockerignore`, if any) into the folder `<tree>.dockerfile`
    /// beside it; adds `salt` as a comment line at
    /// the end of the app's go.mod when given, initialises a repository and
    /// commits the baseline. Nothing of the source is written.
    pub fn create(layout: &Layout, tree: &Path, salt: Option<&str>) -> Result<Workspace, WorkspaceError> {
        Workspace::create_unless(layout, tree, salt, &AtomicBool::new(false))
    }

    /// [`Workspace::create`], giving up with [`WorkspaceError::Interrupted`] between two files once `stop` is set.
    pub fn create_unless(layout: &Layout, tree: &Path, salt: Option<&str>, stop: &AtomicBool) -> Result<Workspace, WorkspaceError> {
        let tree = tree.to_path_buf();
        copy_tree(&layout.source, &tree, stop)?;
        let dockerfile = if layout.dockerfile.is_absolute() {
            let folder = tree.with_extension("dockerfile");
            std::fs::create_dir_all(&folder).map_err(io("create", &folder))?;
            let copy = folder.join(layout.dockerfile.file_name().unwrap_or_else(|| std::ffi::OsStr::new("Dockerfile")));
            std::fs::copy(&layout.dockerfile, &copy).map_err(io("copy", &layout.dockerfile))?;
            // BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile, so it travels with it.
            let own_ignore = PathBuf::from(format!("{}.dockerignore", layout.dockerfile.display()));
            if own_ignore.is_file() {
                let ignore_copy = PathBuf::from(format!("{}.dockerignore", copy.display()));
                std::fs::copy(&own_ignore, &ignore_copy).map_err(io("copy", &own_ignore))?;
            }
            copy
        } else {
            tree.join(&layout.dockerfile)
        };
        let root = tree.join(&layout.app);
        if let Some(salt) = salt {
            let go_mod = root.join("go.mod");
            if go_mod.is_file() {
                let mut text = read(&go_mod)?;
                text.push_str(&format!("\n// layerbench workspace {salt}\n"));
                write(&go_mod, &text)?;
            }
        }
        let git = |action: &'static str| {
            let path = tree.clone();
            move |source| WorkspaceError::Git { action, path, source }
        };
        let repo = git2::Repository::init(&tree).map_err(git("init a repository"))?;
        let ws = Workspace {
            context: tree.join(&layout.context),
            root,
            tree,
            dockerfile,
            repo,
            origin: Origin::default(),
        };
        ws.commit("layerbench baseline")?;
        Ok(ws)
    }

    /// Names the app folder and the scenario in this workspace's errors
    /// (without it they name the scratch copy and the step only).
    pub fn with_origin(mut self, app: &Path, scenario: &str) -> Workspace {
        self.origin = Origin {
            app: Some(app.to_path_buf()),
            scenario: Some(scenario.to_string()),
        };
        self
    }

    /// The app inside the copy.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The build context inside the copy.
    pub fn context_dir(&self) -> &Path {
        &self.context
    }

    /// The Dockerfile the build uses (a path inside the workspace).
    pub fn dockerfile(&self) -> &Path {
        &self.dockerfile
    }

    /// Drops the `# syntax=` directive from the copy's Dockerfile (never the user's), keeping every instruction on
    /// its line; what it dropped, or `None` when there was none.
    pub fn drop_syntax_directive(&self) -> Result<Option<crate::dockerfile::SyntaxDirective>, WorkspaceError> {
        let text = read(&self.dockerfile)?;
        let (Some(directive), Some(without)) = (crate::dockerfile::syntax_directive(&text), crate::dockerfile::without_syntax_directive(&text)) else {
            return Ok(None);
        };
        write(&self.dockerfile, &without)?;
        Ok(Some(directive))
    }

    /// The workspace's Dockerfile as it is now.
    pub fn dockerfile_model(&self) -> Result<DockerfileModel, WorkspaceError> {
        Ok(DockerfileModel::parse(&read(&self.dockerfile)?))
    }

    /// Commits every file (added, changed, deleted) with a fixed author.
    pub fn commit(&self, message: &str) -> Result<(), WorkspaceError> {
        let git = |action: &'static str| {
            let path = self.tree.clone();
            move |source| WorkspaceError::Git { action, path, source }
        };
        let mut index = self.repo.index().map_err(git("open the index"))?;
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .map_err(git("add files"))?;
        index.update_all(["*"].iter(), None).map_err(git("record deletions"))?;
        index.write().map_err(git("write the index"))?;
        let tree_id = index.write_tree().map_err(git("write the tree"))?;
        let tree = self.repo.find_tree(tree_id).map_err(git("find the tree"))?;
        let sig = git2::Signature::now("layerbench", "layerbench@localhost").map_err(git("make a signature"))?;
        let parent = match self.repo.head() {
            Ok(head) => Some(head.peel_to_commit().map_err(git("read HEAD"))?),
            Err(_) => None,
        };
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .map_err(git("commit"))?;
        Ok(())
    }

    /// Applies one change. `nonce` replaces `{nonce}` in texts; `step` names
    /// the step in errors; `versions` serves `bump-module`. Roles in paths
    /// (`{main_go}`, ...) are resolved against the copy as it is now.
    /// A change that names a role this app's shape lacks (no go.sum, no dependency to bump, no `package main`), or
    /// a Dockerfile edit whose line or pattern this template does not have, is skipped, and a note says so: the
    /// step is built without it.
    pub fn apply(&self, change: &Change, nonce: &str, step: &str, versions: &dyn ModuleVersions, applied: &mut Applied) -> Result<(), WorkspaceError> {
        let at = self.at(step);
        match self.apply_change(change, nonce, &at, versions, applied) {
            Err(WorkspaceError::Role { role, source, .. }) if !matches!(source, RoleError::Io { .. }) => {
                applied.notes.push(format!("skipped the change `{}` of {at}: it names {role}, and {source}", change.kind()));
                Ok(())
            }
            // A Dockerfile edit written for another template's lines (a shipped scenario on your template).
            Err(e @ (WorkspaceError::LineNotFound { .. } | WorkspaceError::PatternNotFound { .. })) if matches!(change, Change::DockerfileMove { .. } | Change::DockerfileReplace { .. }) => {
                applied.notes.push(format!("skipped the change `{}`: {e}", change.kind()));
                Ok(())
            }
            Err(WorkspaceError::Io { action, path, source }) => Err(WorkspaceError::Change { at: at.clone(), action, path, source }),
            other => other,
        }
    }

    fn apply_change(&self, change: &Change, nonce: &str, at: &str, versions: &dyn ModuleVersions, applied: &mut Applied) -> Result<(), WorkspaceError> {
        let fill = |s: &str| s.replace("{nonce}", nonce);
        match change {
            Change::Append { file, text } => {
                let path = self.locate(at, file, Follow::Through)?;
                let mut content = read(&path)?;
                content.push_str(&fill(text));
                write(&path, &content)
            }
            Change::Replace { file, pattern, with } => self.replace_in(&self.locate(at, file, Follow::Through)?, pattern, &fill(with), at),
            Change::Write { file, text } => {
                let path = self.locate(at, file, Follow::Through)?;
                create_parent(&path)?;
                write(&path, &fill(text))
            }
            Change::Delete { file } => {
                let path = self.locate(at, file, Follow::NotTheLast)?;
                std::fs::remove_file(&path).map_err(io("delete", &path))
            }
            Change::Touch { file } => {
                let path = self.locate(at, file, Follow::Through)?;
                let f = std::fs::File::options().write(true).open(&path).map_err(io("open", &path))?;
                // Move the time forward by at least a second, so even a coarse clock sees a change.
                let now = SystemTime::now() + std::time::Duration::from_secs(2);
                f.set_modified(now).map_err(io("touch", &path))
            }
            Change::Chmod { file, mode } => {
                use std::os::unix::fs::PermissionsExt;
                let path = self.locate(at, file, Follow::Through)?;
                let bits = u32::from_str_radix(mode, 8).map_err(|_| self.bad_path(at, file, &path, format!("cannot take the chmod mode `{mode}`: it is not octal")))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).map_err(io("chmod", &path))
            }
            Change::Chown { file, owner } => {
                let path = self.locate(at, file, Follow::NotTheLast)?;
                let (uid, gid) = scenario::parse_owner(owner)
                    .ok_or_else(|| self.bad_path(at, file, &path, format!("cannot take the owner `{owner}`: it is not numeric `uid:gid`")))?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io("chown", &path))
            }
            Change::Rename { from, to } => {
                let source = self.locate(at, from, Follow::NotTheLast)?;
                let dest = self.locate(at, to, Follow::NotTheLast)?;
                if std::fs::symlink_metadata(&source).is_err() {
                    return Err(self.bad_path(at, from, &source, "does not exist, so it cannot be renamed".into()));
                }
                self.refuse_existing(at, to, &dest)?;
                create_parent(&dest)?;
                std::fs::rename(&source, &dest).map_err(io("rename", &source))
            }
            Change::Mkdir { dir } => {
                let path = self.locate(at, dir, Follow::NotTheLast)?;
                self.refuse_existing(at, dir, &path)?;
                std::fs::create_dir_all(&path).map_err(io("create", &path))
            }
            Change::Symlink { link, target } => {
                let path = self.locate(at, link, Follow::NotTheLast)?;
                self.refuse_existing(at, link, &path)?;
                self.check_link_target(at, link, &path, target)?;
                create_parent(&path)?;
                std::os::unix::fs::symlink(target, &path).map_err(io("create the link", &path))
            }
            Change::GitCommit { message } => self.commit(&fill(message)),
            Change::DockerfileReplace { pattern, with } => {
                self.replace_in(&self.dockerfile, pattern, &fill(with), at)
            }
            Change::DockerfileMove { line, before } => self.move_line(line, before, at),
            Change::BumpModule { module, version } => self.bump(module, version, at, versions, applied),
            Change::BuildArg { name, value } => {
                applied.build_args.push((name.clone(), fill(value)));
                Ok(())
            }
            Change::PublishModule { module, version } => {
                applied.published.push((module.clone(), version.clone()));
                applied.notes.push(format!("published {module}@{version}"));
                Ok(())
            }
        }
    }

    /// A bump of go.mod and go.sum; `module` may be `{first_direct_dependency}`
    /// and `version` may be `next`, and the note says what they resolved to.
    fn bump(&self, module: &str, version: &str, at: &str, versions: &dyn ModuleVersions, applied: &mut Applied) -> Result<(), WorkspaceError> {
        if self.root.join("vendor/modules.txt").is_file() {
            applied.notes.push(format!(
                "skipped the change `bump-module` of {at}: the app vendors its modules (vendor/modules.txt), which a bump of go.mod alone would leave inconsistent"
            ));
            return Ok(());
        }
        let go_mod_path = self.root.join("go.mod");
        let go_sum_path = self.root.join("go.sum");
        let go_mod = read(&go_mod_path)?;
        let bump_error = |source| WorkspaceError::Bump { at: at.to_string(), source: Box::new(source) };
        let mut resolved = Vec::new();
        let module = if module == FIRST_DIRECT_DEPENDENCY {
            resolved.push("first direct dependency");
            let first = modfile::first_direct_requirement(&go_mod).ok_or_else(|| WorkspaceError::Role {
                at: at.to_string(),
                role: FIRST_DIRECT_DEPENDENCY.to_string(),
                app: self.app().to_path_buf(),
                source: RoleError::NoDirectRequirement(PathBuf::from("go.mod")),
            })?;
            first.module
        } else {
            module.to_string()
        };
        let version = if version == NEXT_VERSION {
            resolved.push("next");
            sum::next_for(&go_mod_path, &go_mod, &module, versions).map_err(bump_error)?
        } else {
            version.to_string()
        };
        // A module without dependencies has no go.sum: the bump writes the first.
        let go_sum = if go_sum_path.exists() { read(&go_sum_path)? } else { String::new() };
        let bumped = sum::bump(&go_mod_path, &go_mod, &go_sum, &module, &version, versions).map_err(bump_error)?;
        write(&go_mod_path, &bumped.go_mod)?;
        write(&go_sum_path, &bumped.go_sum)?;
        let how = if resolved.is_empty() { String::new() } else { format!(" ({})", resolved.join(", ")) };
        applied.notes.push(format!("{module} {} -> {version}{how}", bumped.from_version));
        Ok(())
    }

    /// `scenario `s`, step `x`` (or just the step while the scenario is not named).
    fn at(&self, step: &str) -> String {
        match &self.origin.scenario {
            Some(scenario) => format!("scenario `{scenario}`, step `{step}`"),
            None => format!("step `{step}`"),
        }
    }

    /// The app the errors name: the one copied from when known, else the copy.
    fn app(&self) -> &Path {
        self.origin.app.as_deref().unwrap_or(&self.root)
    }

    /// The scratch path a scenario path names, roles filled in, after checking
    /// that it is relative, does not go up with `..` and that its folder,
    /// followed through every symlink, stays inside the copy. With
    /// `Follow::Through` the path itself is followed as well (for changes that
    /// write through a symlink).
    fn locate(&self, at: &str, written: &str, follow: Follow) -> Result<PathBuf, WorkspaceError> {
        let filled = roles::fill(written, &self.root).map_err(|(role, source)| WorkspaceError::Role {
            at: at.to_string(),
            role,
            app: self.app().to_path_buf(),
            source,
        })?;
        let name = if filled == written { format!("`{written}`") } else { format!("`{written}` ({filled})") };
        let bad = |problem: String| WorkspaceError::BadPath {
            at: at.to_string(),
            file: name.clone(),
            problem,
        };
        if let Some(problem) = scenario::path_problem(&filled) {
            return Err(bad(problem.to_string()));
        }
        let root = std::fs::canonicalize(&self.root).map_err(io("resolve", &self.root))?;
        let path = root.join(&filled);
        let folder = path.parent().unwrap_or(&root);
        let real_folder = real_path(folder).map_err(io("resolve", folder))?;
        if !real_folder.starts_with(&root) {
            return Err(bad(format!("goes through a symlinked folder to {}, outside the app", real_folder.display())));
        }
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if follow == Follow::Through && is_link {
            let real = real_path(&path).map_err(io("resolve", &path))?;
            if !real.starts_with(&root) {
                return Err(bad(format!("is a symlink to {}, outside the app", real.display())));
            }
        }
        Ok(self.root.join(&filled))
    }

    fn bad_path(&self, at: &str, written: &str, path: &Path, problem: String) -> WorkspaceError {
        let shown = path.strip_prefix(&self.root).unwrap_or(path).display().to_string();
        let file = if shown == written { format!("`{written}`") } else { format!("`{written}` ({shown})") };
        WorkspaceError::BadPath { at: at.to_string(), file, problem }
    }

    fn refuse_existing(&self, at: &str, written: &str, path: &Path) -> Result<(), WorkspaceError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Err(self.bad_path(at, written, path, "already exists".into())),
            Err(_) => Ok(()),
        }
    }

    /// A link's target must be relative and resolve (through any symlinks) inside the copy.
    fn check_link_target(&self, at: &str, written: &str, link: &Path, target: &str) -> Result<(), WorkspaceError> {
        if target.is_empty() || Path::new(target).is_absolute() {
            return Err(self.bad_path(at, written, link, format!("cannot point at `{target}`: a symlink target must be a relative path")));
        }
        let root = std::fs::canonicalize(&self.root).map_err(io("resolve", &self.root))?;
        let folder = link.parent().unwrap_or(&self.root);
        let real = real_path(&folder.join(target)).map_err(io("resolve", folder))?;
        if !real.starts_with(&root) {
            return Err(self.bad_path(at, written, link, format!("cannot point at `{target}`: it resolves to {}, outside the app", real.display())));
        }
        Ok(())
    }

    fn replace_in(&self, path: &Path, pattern: &str, with: &str, at: &str) -> Result<(), WorkspaceError> {
        let content = read(path)?;
        if !content.contains(pattern) {
            return Err(WorkspaceError::PatternNotFound {
                at: at.to_string(),
                file: path.to_path_buf(),
                pattern: pattern.to_string(),
            });
        }
        write(path, &content.replacen(pattern, with, 1))
    }

    fn move_line(&self, line: &str, before: &str, at: &str) -> Result<(), WorkspaceError> {
        let path = self.dockerfile.clone();
        let content = read(&path)?;
        let mut lines: Vec<&str> = content.lines().collect();
        let not_found = |l: &str| WorkspaceError::LineNotFound {
            at: at.to_string(),
            file: path.clone(),
            line: l.to_string(),
        };
        let from = lines.iter().position(|l| l.contains(line)).ok_or_else(|| not_found(line))?;
        let moved = lines.remove(from);
        let to = lines.iter().position(|l| l.contains(before)).ok_or_else(|| not_found(before))?;
        lines.insert(to, moved);
        write(&path, &(lines.join("\n") + "\n"))
    }
}

/// Whether [`Workspace::locate`] follows a symlink at the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// The change writes through the path (its content, time or mode).
    Through,
    /// The change acts on the entry itself (a link is deleted, renamed or chowned, not its target).
    NotTheLast,
}

/// One step of a path being resolved.
enum Part {
    Root,
    Up,
    Name(OsString),
}

fn parts(path: &Path) -> Vec<Part> {
    path.components()
        .filter_map(|c| match c {
            Component::RootDir => Some(Part::Root),
            Component::ParentDir => Some(Part::Up),
            Component::Normal(name) => Some(Part::Name(name.to_os_string())),
            Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// `path` (absolute) with every symlink along it followed, as the kernel
/// would; a part that does not exist (yet) is kept as written.
fn real_path(path: &Path) -> std::io::Result<PathBuf> {
    let mut pending: std::collections::VecDeque<Part> = parts(path).into();
    let mut out = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        match part {
            Part::Root => out = PathBuf::from("/"),
            Part::Up => {
                out.pop();
            }
            Part::Name(name) => {
                let next = out.join(&name);
                let is_link = std::fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink());
                if !is_link {
                    out = next;
                    continue;
                }
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::other(format!("{}: too many levels of symbolic links", path.display())));
                }
                let target = std::fs::read_link(&next)?;
                for p in parts(&target).into_iter().rev() {
                    pending.push_front(p);
                }
            }
        }
    }
    Ok(out)
}

fn create_parent(path: &Path) -> Result<(), WorkspaceError> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(io("create", parent)),
        None => Ok(()),
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WorkspaceError + 'a {
    move |source| WorkspaceError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String, WorkspaceError> {
    std::fs::read_to_string(path).map_err(io("read", path))
}

fn write(path: &Path, text: &str) -> Result<(), WorkspaceError> {
    std::fs::write(path, text).map_err(io("write", path))
}

/// Copies files, folders and symlinks, keeping files' permission bits; skips `.git` folders.
fn copy_tree(from: &Path, to: &Path, stop: &AtomicBool) -> Result<(), WorkspaceError> {
    std::fs::create_dir_all(to).map_err(io("create", to))?;
    let mut walker = WalkDir::new(from).min_depth(1).follow_links(false).into_iter();
    while let Some(entry) = walker.next() {
        if stop.load(Ordering::Relaxed) {
            return Err(WorkspaceError::Interrupted { from: from.to_path_buf() });
        }
        let entry = entry.map_err(|e| {
            let at = e.path().unwrap_or(from).to_path_buf();
            io("read", &at)(e.into())
        })?;
        let src = entry.path();
        let dst = to.join(src.strip_prefix(from).unwrap_or(src));
        let kind = entry.file_type();
        if kind.is_dir() {
            if entry.file_name() == ".git" {
                walker.skip_current_dir();
                continue;
            }
            std::fs::create_dir_all(&dst).map_err(io("create", &dst))?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(src).map_err(io("read the link", src))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(io("create the link", &dst))?;
        } else {
            std::fs::copy(src, &dst).map_err(io("copy", src))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gomod::{Version, VersionFiles};
    use std::collections::BTreeMap;
    use crate::scenario::Scenario;
    use std::io::Write as _;
    use std::os::unix::fs::MetadataExt as _;

    fn app() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("main.go"), "package main\n").unwrap();
        std::fs::write(dir.path().join("go.mod"), "module m\n").unwrap();
        std::fs::write(dir.path().join("d/Dockerfile"), "FROM x\nRUN a\nCOPY . .\nRUN b\n").unwrap();
        dir
    }

    /// Writes files under `root`, creating folders.
    fn files(root: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    /// Module versions in a plain folder (`<module>@<version>.mod` and `.zip`, no requirements), as a bump reads them.
    struct Folder {
        root: PathBuf,
        versions: BTreeMap<String, Vec<Version>>,
    }

    impl ModuleVersions for Folder {
        fn versions(&self, module: &str) -> Vec<Version> {
            self.versions.get(module).cloned().unwrap_or_default()
        }

        fn files_for(&self, module: &str, version: &str) -> Option<VersionFiles> {
            let stem = self.root.join(format!("{}@{version}", module.replace('/', "!")));
            let files = VersionFiles { mod_file: stem.with_extension("mod"), zip: stem.with_extension("zip") };
            (files.mod_file.is_file() && files.zip.is_file()).then_some(files)
        }

        fn describe(&self) -> String {
            format!("the module store {}", self.root.display())
        }
    }

    /// A folder holding each module at each version, listed oldest first.
    fn store(root: &Path, modules: &[(&str, &[&str])]) -> Folder {
        std::fs::create_dir_all(root).unwrap();
        let mut store = Folder { root: root.to_path_buf(), versions: BTreeMap::new() };
        for (module, versions) in modules {
            let mut listed: Vec<Version> = versions.iter().filter_map(|v| Version::parse(v)).collect();
            listed.sort();
            store.versions.insert(module.to_string(), listed);
            for v in *versions {
                let go_mod = format!("module {module}\n\ngo 1.20\n");
                let stem = root.join(format!("{}@{v}", module.replace('/', "!")));
                std::fs::write(stem.with_extension("mod"), &go_mod).unwrap();
                let mut zip = zip::ZipWriter::new(std::fs::File::create(stem.with_extension("zip")).unwrap());
                zip.start_file(format!("{module}@{v}/go.mod"), zip::write::SimpleFileOptions::default()).unwrap();
                zip.write_all(go_mod.as_bytes()).unwrap();
                zip.finish().unwrap();
            }
        }
        store
    }

    fn apply_all(ws: &Workspace, changes: &[Change], versions: &dyn ModuleVersions) -> Result<Applied, WorkspaceError> {
        let mut applied = Applied::default();
        for c in changes {
            ws.apply(c, "n1", "s", versions, &mut applied)?;
        }
        Ok(applied)
    }

    /// The app copied whole, as its own context, with the Dockerfile at `dockerfile` inside it.
    fn layout_of(app: &Path, dockerfile: &str) -> Layout {
        Layout { source: app.to_path_buf(), app: PathBuf::new(), context: PathBuf::new(), dockerfile: PathBuf::from(dockerfile) }
    }

    #[test]
    fn changes_apply_to_the_copy_and_never_to_the_app() {
        let app = app();
        let scratch = tempfile::tempdir().unwrap();
        let cell = scratch.path().join("ws");
        let layout = Layout::new(app.path(), app.path(), &app.path().join("d/Dockerfile")).unwrap();
        let ws = Workspace::create(&layout, &cell, Some("cell-1")).unwrap();
        let root = cell.clone();
        let store = store(&scratch.path().join("empty-store"), &[]);
        let mut applied = Applied::default();
        let changes = [
            Change::Append { file: "main.go".into(), text: "// {nonce}\n".into() },
            Change::DockerfileMove { line: "COPY . .".into(), before: "RUN a".into() },
            Change::BuildArg { name: "X".into(), value: "v-{nonce}".into() },
            Change::GitCommit { message: "edit".into() },
        ];
        for c in &changes {
            ws.apply(c, "n42", "s", &store, &mut applied).unwrap();
        }
        assert_eq!(std::fs::read_to_string(root.join("main.go")).unwrap(), "package main\n// n42\n");
        assert_eq!(std::fs::read_to_string(root.join("d/Dockerfile")).unwrap(), "FROM x\nCOPY . .\nRUN a\nRUN b\n");
        assert!(std::fs::read_to_string(root.join("go.mod")).unwrap().contains("layerbench workspace cell-1"));
        assert_eq!(applied.build_args, vec![("X".to_string(), "v-n42".to_string())]);
        assert_eq!(std::fs::read_to_string(app.path().join("main.go")).unwrap(), "package main\n");
        assert_eq!(std::fs::read_to_string(app.path().join("go.mod")).unwrap(), "module m\n");
        let repo = git2::Repository::open(&root).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        assert_eq!(head.message(), Some("edit"));
        assert_eq!(head.parent_count(), 1);
    }

    #[test]
    fn a_dockerfile_outside_the_app_is_copied_beside_it_and_edited_there() {
        let app = app();
        let templates = tempfile::tempdir().unwrap();
        let outside = templates.path().join("service.Dockerfile");
        std::fs::write(&outside, "FROM x\nRUN a\n").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let layout = Layout::new(app.path(), app.path(), &outside).unwrap();
        assert!(layout.dockerfile.is_absolute());
        let ws = Workspace::create(&layout, &scratch.path().join("c"), None).unwrap();
        let change = Change::DockerfileReplace { pattern: "RUN a".into(), with: "RUN b".into() };
        ws.apply(&change, "n", "s", &store(&scratch.path().join("empty-store"), &[]), &mut Applied::default()).unwrap();
        assert_eq!(std::fs::read_to_string(ws.dockerfile()).unwrap(), "FROM x\nRUN b\n");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "FROM x\nRUN a\n", "the user's template is never written");
    }

    #[test]
    fn a_dockerfile_outside_the_app_takes_its_own_dockerignore_along() {
        let app = app();
        let templates = tempfile::tempdir().unwrap();
        let outside = templates.path().join("service.Dockerfile");
        std::fs::write(&outside, "FROM x\n").unwrap();
        std::fs::write(templates.path().join("service.Dockerfile.dockerignore"), ".git\nsecret\n").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let layout = Layout::new(app.path(), app.path(), &outside).unwrap();
        let ws = Workspace::create(&layout, &scratch.path().join("c"), None).unwrap();
        let copied = ws.dockerfile().with_file_name("service.Dockerfile.dockerignore");
        assert_eq!(std::fs::read_to_string(copied).unwrap(), ".git\nsecret\n");
    }

    #[test]
    fn a_context_holding_the_app_is_copied_whole_and_scenario_paths_stay_relative_to_the_app() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join("svc")).unwrap();
        std::fs::write(repo.path().join("svc/go.mod"), "module m\n").unwrap();
        std::fs::write(repo.path().join("shared.txt"), "s").unwrap();
        std::fs::write(repo.path().join("Dockerfile"), "FROM x\n").unwrap();
        let layout = Layout::new(&repo.path().join("svc"), repo.path(), &repo.path().join("Dockerfile")).unwrap();
        assert_eq!(layout.app, Path::new("svc"));
        let scratch = tempfile::tempdir().unwrap();
        let ws = Workspace::create(&layout, &scratch.path().join("c"), Some("x")).unwrap();
        assert!(ws.context_dir().join("shared.txt").is_file());
        assert!(std::fs::read_to_string(ws.root().join("go.mod")).unwrap().contains("layerbench workspace x"));
        let unrelated = tempfile::tempdir().unwrap();
        assert!(Layout::new(&repo.path().join("svc"), unrelated.path(), &repo.path().join("Dockerfile")).is_err());
    }

    #[test]
    fn a_pattern_that_does_not_match_names_the_file_and_pattern() {
        let app = app();
        let scratch = tempfile::tempdir().unwrap();
        let layout = Layout::new(app.path(), app.path(), &app.path().join("d/Dockerfile")).unwrap();
        let ws = Workspace::create(&layout, &scratch.path().join("ws"), None).unwrap();
        let change = Change::Replace { file: "main.go".into(), pattern: "func nope".into(), with: "x".into() };
        let err = ws
            .apply(&change, "n", "edit-step", &store(&scratch.path().join("empty-store"), &[]), &mut Applied::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("main.go") && err.contains("func nope") && err.contains("edit-step"), "{err}");
    }

    #[test]
    fn rename_mkdir_symlink_and_chown_change_the_copy() {
        let app = app();
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("ws");
        let ws = Workspace::create(&layout_of(app.path(), "d/Dockerfile"), &root, None).unwrap();
        let store = store(&scratch.path().join("empty-store"), &[]);
        let probe = root.join("probe");
        std::fs::write(&probe, "").unwrap();
        let me = std::fs::metadata(&probe).unwrap();
        let (uid, gid) = (me.uid(), me.gid());
        std::fs::remove_file(&probe).unwrap();
        let owner = format!("{}:{}", if uid == 0 { 1234 } else { uid }, if uid == 0 { 5678 } else { gid });
        let changes = [
            Change::Mkdir { dir: "empty/deeper".into() },
            Change::Rename { from: "main.go".into(), to: "cmd/app/main.go".into() },
            Change::Symlink { link: "cmd/current.go".into(), target: "app/main.go".into() },
            Change::Chown { file: "cmd/current.go".into(), owner: owner.clone() },
        ];
        apply_all(&ws, &changes, &store).unwrap();
        assert!(root.join("empty/deeper").is_dir());
        assert!(std::fs::read_dir(root.join("empty/deeper")).unwrap().next().is_none());
        assert!(!root.join("main.go").exists());
        assert_eq!(std::fs::read_to_string(root.join("cmd/app/main.go")).unwrap(), "package main\n");
        assert_eq!(std::fs::read_link(root.join("cmd/current.go")).unwrap(), Path::new("app/main.go"));
        assert_eq!(std::fs::read_to_string(root.join("cmd/current.go")).unwrap(), "package main\n");
        // chown acts on the link itself; its target keeps its owner.
        let link = std::fs::symlink_metadata(root.join("cmd/current.go")).unwrap();
        assert_eq!(format!("{}:{}", link.uid(), link.gid()), owner);
        let target = std::fs::metadata(root.join("cmd/app/main.go")).unwrap();
        assert_eq!((target.uid(), target.gid()), (uid, gid));
        // Nothing is overwritten and nothing missing is renamed.
        let again = apply_all(&ws, &[Change::Mkdir { dir: "empty".into() }], &store).unwrap_err().to_string();
        assert!(again.contains("`empty`") && again.contains("already exists"), "{again}");
        let clobber = apply_all(&ws, &[Change::Rename { from: "go.mod".into(), to: "cmd/app/main.go".into() }], &store).unwrap_err().to_string();
        assert!(clobber.contains("cmd/app/main.go") && clobber.contains("already exists"), "{clobber}");
        let missing = apply_all(&ws, &[Change::Rename { from: "nope.go".into(), to: "x.go".into() }], &store).unwrap_err().to_string();
        assert!(missing.contains("nope.go") && missing.contains("does not exist"), "{missing}");
        assert_eq!(std::fs::read_to_string(app.path().join("main.go")).unwrap(), "package main\n", "the app is untouched");
    }

    #[test]
    fn paths_that_leave_the_app_are_refused_with_the_step_and_the_path() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "keep\n").unwrap();
        let app = app();
        std::os::unix::fs::symlink(outside.path(), app.path().join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), app.path().join("secret-link.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("not-yet.txt"), app.path().join("dangling.txt")).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("ws");
        let ws = Workspace::create(&layout_of(app.path(), "d/Dockerfile"), &root, None).unwrap().with_origin(app.path(), "escapes");
        let store = store(&scratch.path().join("empty-store"), &[]);
        let refused = |change: Change, problem: &str, file: &str| {
            let err = ws.apply(&change, "n", "escape-step", &store, &mut Applied::default()).unwrap_err().to_string();
            assert!(err.contains("escapes") && err.contains("escape-step"), "{err}");
            assert!(err.contains(file) && err.contains(problem), "{change:?}: {err}");
        };
        refused(Change::Delete { file: "../x".into() }, "`..`", "../x");
        refused(Change::Write { file: "/etc/x".into(), text: "x".into() }, "absolute", "/etc/x");
        refused(Change::Write { file: "out/new.txt".into(), text: "x".into() }, "symlinked folder", "out/new.txt");
        refused(Change::Mkdir { dir: "out/made".into() }, "symlinked folder", "out/made");
        refused(Change::Rename { from: "main.go".into(), to: "out/main.go".into() }, "symlinked folder", "out/main.go");
        refused(Change::Symlink { link: "out/l".into(), target: "x".into() }, "symlinked folder", "out/l");
        refused(Change::Append { file: "secret-link.txt".into(), text: "x".into() }, "outside the app", "secret-link.txt");
        refused(Change::Write { file: "dangling.txt".into(), text: "x".into() }, "outside the app", "dangling.txt");
        refused(Change::Chmod { file: "secret-link.txt".into(), mode: "0777".into() }, "outside the app", "secret-link.txt");
        refused(Change::Symlink { link: "up".into(), target: "../..".into() }, "outside the app", "`up`");
        refused(Change::Symlink { link: "via".into(), target: "out/secret.txt".into() }, "outside the app", "`via`");
        refused(Change::Symlink { link: "abs".into(), target: "/etc/passwd".into() }, "relative path", "`abs`");
        assert_eq!(std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(), "keep\n");
        assert!(!outside.path().join("not-yet.txt").exists() && !outside.path().join("new.txt").exists());
        assert!(!outside.path().join("made").exists() && !outside.path().join("main.go").exists());
        // Acting on a link itself never reaches its target: deleting it is fine.
        let delete = Change::Delete { file: "secret-link.txt".into() };
        ws.apply(&delete, "n", "s", &store, &mut Applied::default()).unwrap();
        assert!(outside.path().join("secret.txt").exists());
        // A target that goes up and comes back inside is fine.
        let inside = Change::Symlink { link: "d/up.go".into(), target: "../main.go".into() };
        ws.apply(&inside, "n", "s", &store, &mut Applied::default()).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("d/up.go")).unwrap(), "package main\n");
    }

    #[test]
    fn roles_resolve_against_the_copy_and_failures_name_scenario_role_and_app() {
        let app = tempfile::tempdir().unwrap();
        files(
            app.path(),
            &[
                ("go.mod", "module example.com/svc\n"),
                ("cmd/server/main.go", "package main\n\nfunc main() {}\n"),
                ("cmd/migrate/main.go", "package main\n\nfunc main() {}\n"),
                ("internal/api/api.go", "package api\n"),
                ("build/Dockerfile", "FROM x\n"),
            ],
        );
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("ws");
        let ws = Workspace::create(&layout_of(app.path(), "build/Dockerfile"), &root, None).unwrap().with_origin(app.path(), "my-scenario");
        let store = store(&scratch.path().join("empty-store"), &[]);
        let edits = [
            Change::Append { file: "{main_go}".into(), text: "// main {nonce}\n".into() },
            Change::Append { file: "{any_go}".into(), text: "// any {nonce}\n".into() },
            Change::Touch { file: "{go_mod}".into() },
        ];
        apply_all(&ws, &edits, &store).unwrap();
        assert!(std::fs::read_to_string(root.join("cmd/migrate/main.go")).unwrap().ends_with("// main n1\n"));
        assert!(std::fs::read_to_string(root.join("cmd/server/main.go")).unwrap().ends_with("// any n1\n"));
        // Resolved against the copy as it is now: after a rename the role follows.
        apply_all(&ws, &[Change::Rename { from: "cmd/migrate".into(), to: "tools/migrate".into() }], &store).unwrap();
        apply_all(&ws, &[Change::Chmod { file: "{main_go}".into(), mode: "0755".into() }], &store).unwrap();
        assert_eq!(std::fs::metadata(root.join("cmd/server/main.go")).unwrap().mode() & 0o777, 0o755);
        // A role the app lacks skips the change, and a note names the scenario, the role and why.
        let applied = apply_all(&ws, &[Change::Touch { file: "{go_sum}".into() }], &store).unwrap();
        let note = applied.notes.join("\n");
        assert!(note.starts_with("skipped the change `touch`") && note.contains("my-scenario") && note.contains("{go_sum}") && note.contains("no go.sum"), "{note}");
        for main in ["cmd/server/main.go", "tools/migrate/main.go"] {
            std::fs::remove_file(root.join(main)).unwrap();
        }
        let applied = apply_all(&ws, &[Change::Append { file: "{main_go}".into(), text: "x".into() }], &store).unwrap();
        let note = applied.notes.join("\n");
        assert!(note.contains("my-scenario") && note.contains("{main_go}") && note.contains("package main"), "{note}");
    }

    #[test]
    fn the_first_direct_dependency_moves_to_the_next_release() {
        let app = tempfile::tempdir().unwrap();
        let go_mod = "module example.com/svc\n\nrequire (\n\texample.org/low v0.1.0 // indirect\n\texample.org/first v1.0.0\n\texample.org/second v1.0.0\n)\n";
        let go_sum = "example.org/first v1.0.0 h1:old=\nexample.org/first v1.0.0/go.mod h1:oldmod=\nexample.org/low v0.1.0/go.mod h1:low=\n";
        files(app.path(), &[("go.mod", go_mod), ("go.sum", go_sum), ("main.go", "package main\n\nfunc main() {}\n")]);
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("ws");
        let ws = Workspace::create(&layout_of(app.path(), "Dockerfile"), &root, None).unwrap();
        let store = store(&scratch.path().join("store"), &[("example.org/first", &["v1.0.0", "v1.1.0-rc.1", "v1.2.0", "v1.1.0"])]);
        let bump = Change::BumpModule { module: FIRST_DIRECT_DEPENDENCY.into(), version: NEXT_VERSION.into() };
        let applied = apply_all(&ws, std::slice::from_ref(&bump), &store).unwrap();
        assert_eq!(applied.notes, ["example.org/first v1.0.0 -> v1.1.0 (first direct dependency, next)"]);
        let bumped = std::fs::read_to_string(root.join("go.mod")).unwrap();
        assert!(bumped.contains("\texample.org/first v1.1.0\n") && bumped.contains("example.org/low v0.1.0 // indirect"), "{bumped}");
        let sum = std::fs::read_to_string(root.join("go.sum")).unwrap();
        assert!(sum.contains("example.org/first v1.1.0 h1:") && sum.contains("example.org/first v1.1.0/go.mod h1:") && !sum.contains("h1:old="), "{sum}");
        let applied = apply_all(&ws, std::slice::from_ref(&bump), &store).unwrap();
        assert_eq!(applied.notes, ["example.org/first v1.1.0 -> v1.2.0 (first direct dependency, next)"]);
        let err = apply_all(&ws, &[bump], &store).unwrap_err().to_string();
        assert!(err.contains("example.org/first") && err.contains("newer than v1.2.0") && err.contains("v1.1.0-rc.1, v1.1.0, v1.2.0"), "{err}");
        let second = Change::BumpModule { module: "example.org/second".into(), version: NEXT_VERSION.into() };
        let err = apply_all(&ws, &[second], &store).unwrap_err().to_string();
        assert!(err.contains("no release of example.org/second") && err.contains("no version"), "{err}");
    }

    #[test]
    fn a_go_mod_with_only_indirect_requirements_has_no_first_direct_dependency_and_its_bump_is_skipped() {
        let app = tempfile::tempdir().unwrap();
        files(app.path(), &[("go.mod", "module x\n\nrequire example.org/low v0.1.0 // indirect\n"), ("go.sum", "")]);
        let scratch = tempfile::tempdir().unwrap();
        let ws = Workspace::create(&layout_of(app.path(), "Dockerfile"), &scratch.path().join("ws"), None).unwrap().with_origin(app.path(), "bumps");
        let bump = Change::BumpModule { module: FIRST_DIRECT_DEPENDENCY.into(), version: NEXT_VERSION.into() };
        let applied = apply_all(&ws, &[bump], &store(&scratch.path().join("empty-store"), &[])).unwrap();
        let note = applied.notes.join("\n");
        assert!(note.contains("bumps") && note.contains(FIRST_DIRECT_DEPENDENCY) && note.contains("indirect"), "{note}");
        assert!(std::fs::read_to_string(scratch.path().join("ws/go.mod")).unwrap().contains("example.org/low v0.1.0 // indirect"), "go.mod is unchanged");
    }

    /// Which shipped scenarios the README says fit any app (the rest are the sample's).
    fn fits_any_app(readme: &str, scenario_file: &str) -> Option<bool> {
        readme.lines().find_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells.len() > 3 && cells[1] == format!("`{scenario_file}`")).then(|| cells[2].starts_with("any app"))
        })
    }

    /// Applies every step of `scenario` to a fresh copy of `app`; the notes of each step.
    fn run_scenario(app: &Path, dockerfile: &str, scenario: &Scenario, versions: &dyn ModuleVersions) -> Result<Vec<String>, WorkspaceError> {
        let scratch = tempfile::tempdir().unwrap();
        let ws = Workspace::create(&layout_of(app, dockerfile), &scratch.path().join("ws"), Some("t")).unwrap().with_origin(app, &scenario.name);
        let mut notes = Vec::new();
        for (i, step) in scenario.steps.iter().enumerate() {
            let mut applied = Applied::default();
            for change in &step.changes {
                ws.apply(change, &format!("t-{i}"), &step.name, versions, &mut applied)?;
            }
            notes.extend(applied.notes);
            ws.commit(&step.name)?;
        }
        Ok(notes)
    }

    #[test]
    fn every_shipped_scenario_applies_to_the_sample_and_the_any_app_ones_to_another_layout() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let readme = std::fs::read_to_string(manifest.join("scenarios/README.md")).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let versions = store(
            &scratch.path().join("store"),
            &[
                ("github.com/BurntSushi/toml", &["v1.2.0", "v1.3.2"]),
                ("golang.org/x/sys", &["v0.3.0", "v0.22.0"]),
                ("example.org/first", &["v0.9.0", "v1.0.0", "v1.0.1"]),
            ],
        );
        let other = scratch.path().join("other");
        files(
            &other,
            &[
                ("go.mod", "module example.com/other\n\ngo 1.23\n\nrequire (\n\texample.org/low v0.1.0 // indirect\n\texample.org/first v1.0.0\n)\n"),
                ("go.sum", "example.org/first v1.0.0 h1:a=\nexample.org/first v1.0.0/go.mod h1:b=\nexample.org/low v0.1.0/go.mod h1:c=\n"),
                ("cmd/server/main.go", "package main\n\nimport \"example.com/other/internal/handler\"\n\nfunc main() { handler.Serve() }\n"),
                ("cmd/worker/main.go", "package main\n\nfunc main() {}\n"),
                ("internal/handler/handler.go", "package handler\n\nfunc Serve() {}\n"),
                ("internal/handler/handler_test.go", "package handler\n"),
                ("build/Dockerfile", "FROM golang:1.23 AS build\nCOPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build ./cmd/server\n"),
            ],
        );
        let mut any_app = 0;
        for scenario in crate::scenario::load_dir(&manifest.join("scenarios")).unwrap() {
            let file = format!("{}.toml", scenario.name);
            let fits = fits_any_app(&readme, &file).unwrap_or_else(|| panic!("scenarios/README.md has no row for {file}"));
            let notes = run_scenario(&manifest.join("sample-go-app"), "dockerfiles/layered.Dockerfile", &scenario, &versions)
                .unwrap_or_else(|e| panic!("{} on the sample: {e}", scenario.name));
            if scenario.name == "bump-dependency" || scenario.name == "bump-first-dependency" {
                assert!(notes[0].starts_with("github.com/BurntSushi/toml v1.2.0 -> v1.3.2"), "{}: {notes:?}", scenario.name);
            }
            if fits {
                any_app += 1;
                let notes = run_scenario(&other, "build/Dockerfile", &scenario, &versions).unwrap_or_else(|e| panic!("{} on another layout: {e}", scenario.name));
                if scenario.name == "bump-first-dependency" {
                    assert_eq!(notes, ["example.org/first v1.0.0 -> v1.0.1 (first direct dependency, next)"]);
                }
            }
        }
        assert!(any_app >= 8, "only {any_app} shipped scenarios are marked as fitting any app");
    }
}
