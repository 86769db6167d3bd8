//! The harness's one error type.

use std::path::PathBuf;

/// Why the harness could not do what was asked.
///
/// Every message names what failed and, when Postfix was involved, the log to read. A test
/// that gets one of these must fail (`panic!`, or use [`Postfix::require`](crate::Postfix::require)):
/// a missing or broken component is never a reason to skip.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program the harness runs is not installed.
    #[error(
        "`{program}` not found (looked in PATH, /usr/sbin, /usr/bin, /sbin, /bin): install Debian's \
         `{package}` package (scripts/test does); a test that needs it fails, it is never skipped"
    )]
    MissingProgram {
        /// The program's file name.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },

    /// Postfix's master must be started by root, and this process is not root.
    #[error(
        "Postfix's master must start as root, but this process runs with effective uid {uid}: \
         run the tests as root (CI does); a test that needs Postfix fails, it is never skipped"
    )]
    NotRoot {
        /// The effective user id of this process.
        uid: u32,
    },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file or program.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A command ran but reported failure.
    #[error("`{command}` failed ({status}){output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (prefixed with a newline), and where the log is when there is one.
        output: String,
    },

    /// Postfix or smtp-sink did not come up (or did not go down) as expected.
    #[error(
        "{what}\n--- see {log} (the instance directory is removed when the test ends unless \
         ALLOWGATE_TESTKIT_KEEP=1){tail}"
    )]
    Startup {
        /// What went wrong.
        what: String,
        /// The log to read (the instance's maillog, or smtp-sink's output).
        log: PathBuf,
        /// The log's last lines (prefixed with a newline), when there are any.
        tail: String,
    },

    /// A [`PostfixConfig`](crate::PostfixConfig) or [`Mail`](crate::Mail) value Postfix or swaks
    /// cannot take (for example a line break in a `main.cf` value).
    #[error("invalid test setup: {0}")]
    Invalid(String),

    /// Output of a tool (postqueue, swaks, smtp-sink) that the harness could not understand.
    #[error("cannot understand {what}: {detail}")]
    Parse {
        /// Which output.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The last `n` lines of `text`, each indented, prefixed with a newline and a heading; empty
/// when there is nothing to show.
pub(crate) fn tail_lines(heading: &str, text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(n);
    let mut out = format!("\n--- {heading} (last {} lines) ---", lines.len() - start);
    for line in &lines[start..] {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}
