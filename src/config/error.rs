//! `ConfigError`: one-line "file: field.path: problem" errors for bad configuration.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can be wrong with a configuration: the file it came from,
/// the field path inside it (`nodes[1].instance_id`) and what is wrong.
///
/// `Display` is one line, `config error: {file}: {field}: {problem}`, because
/// the binary prints it and exits 2. Configuration errors are never worth
/// retrying: the file has to change first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: Option<PathBuf>,
    field: Option<String>,
    kind: ConfigErrorKind,
    problem: String,
}

/// The class of a [`ConfigError`], so callers and tests can branch without
/// looking at the message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read (missing, permission denied, a directory,
    /// not UTF-8, too large).
    Read(std::io::ErrorKind),
    /// The text is not YAML; carries the 1-based position when the parser gave one.
    Syntax {
        /// 1-based line of the error.
        line: Option<usize>,
        /// 1-based column of the error.
        column: Option<usize>,
    },
    /// A key the config does not know (probably a typo).
    UnknownKey,
    /// The same key twice in one mapping.
    DuplicateKey,
    /// A value of the wrong YAML type (a list where a string belongs, ...).
    WrongType,
    /// A required value is absent or empty.
    Missing,
    /// A value of the right type that breaks a rule (range, format, uniqueness).
    Invalid,
}

impl ConfigError {
    /// An error at `field` (a path like `wan_dns.cloudflare.zone_id`); the
    /// file is filled in by [`ConfigError::in_file`].
    pub(crate) fn at(
        field: impl Into<String>,
        kind: ConfigErrorKind,
        problem: impl Into<String>,
    ) -> Self {
        let field = field.into();
        ConfigError {
            file: None,
            field: (!field.is_empty()).then_some(field),
            kind,
            problem: problem.into(),
        }
    }

    /// An error about the file as a whole (I/O, YAML syntax, top-level shape).
    pub(crate) fn whole(kind: ConfigErrorKind, problem: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            field: None,
            kind,
            problem: problem.into(),
        }
    }

    /// Names the file the error belongs to.
    pub(crate) fn in_file(mut self, file: Option<&Path>) -> Self {
        self.file = file.map(Path::to_path_buf);
        self
    }

    /// The file the configuration came from; `None` for built-in defaults.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The field path (`nodes[1].instance_id`), or `None` for errors about the
    /// whole file.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong, e.g. `missing` or `unknown key (did you mean ...?)`.
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// The class of error.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }

    /// Always `false`: a config error stays until someone edits the file.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "config error: {}: ", p.display())?,
            None => write!(f, "config error: (built-in defaults): ")?,
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        // One line, whatever the parser put in its message.
        let mut first = true;
        for line in self.problem.lines() {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(line.trim())?;
            first = false;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
