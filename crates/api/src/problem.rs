//! Problems found in input: where (file and line, or cluster object), what
//! object, which field, and why. The same type serves `shmesh validate`, the
//! logs of `shmesh serve` and the admin debug view.

use std::fmt;

use super::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The object is rejected; its last good version keeps being served.
    Error,
    /// The object applies, but something it refers to is missing
    /// (as `istioctl analyze` reports it).
    Warning,
}

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Origin {
    /// File path, or `kubernetes` for objects from the API server.
    pub source: String,
    /// 1-based line of the document, where known.
    pub line: Option<usize>,
}

impl Origin {
    pub fn file(path: impl Into<String>, line: usize) -> Origin {
        Origin {
            source: path.into(),
            line: Some(line),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.source, line),
            None => f.write_str(&self.source),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub origin: Origin,
    pub severity: Severity,
    /// Kind as written in the object (may be one shmesh does not know).
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Path of the offending field, e.g. `spec.http[0].route[1].weight`.
    pub field: String,
    pub reason: String,
}

impl Problem {
    pub fn error(field: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            origin: Origin::default(),
            severity: Severity::Error,
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn warning(field: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(field, reason)
        }
    }

    /// Fills in which object the problem belongs to.
    pub fn about(mut self, origin: &Origin, kind: &str, namespace: &str, name: &str) -> Problem {
        self.origin = origin.clone();
        self.kind = kind.to_string();
        self.namespace = namespace.to_string();
        self.name = name.to_string();
        self
    }

    pub fn for_kind(self, origin: &Origin, kind: Kind, namespace: &str, name: &str) -> Problem {
        self.about(origin, kind.as_str(), namespace, name)
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A problem's words without where it was found: `SEVERITY: KIND
/// NAMESPACE/NAME: FIELD: REASON`, what `shmesh validate` prints after
/// `FILE:LINE: `. The admission webhook answers with it, as its objects come
/// from no file.
pub struct Message<'a>(&'a Problem);

impl Problem {
    pub fn message(&self) -> Message<'_> {
        Message(self)
    }
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        let sev = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let kind = if p.kind.is_empty() {
            "<unknown kind>"
        } else {
            &p.kind
        };
        let object = match (p.namespace.is_empty(), p.name.is_empty()) {
            (_, true) => "<unnamed>".to_string(),
            (true, false) => p.name.clone(),
            (false, false) => format!("{}/{}", p.namespace, p.name),
        };
        let field = if p.field.is_empty() {
            "<document>"
        } else {
            &p.field
        };
        write!(f, "{sev}: {kind} {object}: {field}: {}", p.reason)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message())
    }
}
