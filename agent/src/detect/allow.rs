//! What fails a CI run and what is known to be benign: `--fail-on`, `--allow`, the allow file,
//! and the default allowlist of the Go runtime's and standard library's own long waits.

use regex::Regex;

use super::Finding;
use super::patterns::{self, Pattern};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "--fail-on {0:?}: no such pattern (see docs/patterns.md: an id such as BP03, a name such as chan-recv-no-sender, or `all`)"
    )]
    UnknownPattern(String),
    #[error("allow rule {rule:?} is neither a pattern nor a valid regular expression: {source}")]
    BadRegex { rule: String, source: regex::Error },
    #[error("reading the allow file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// Functions whose long waits are how the standard library works, not bugs: an idle HTTP
/// keep-alive connection's read and write loops, an HTTP/2 connection's frame loops, the
/// `database/sql` connection opener and cleaner, `os/signal`'s delivery loop, a test binary's
/// goroutines waiting for their subtests or parallel tests, and a context's goroutine waiting to
/// propagate a parent's cancellation.
pub const DEFAULT_ALLOW: &[&str] = &[
    r"^net/http\.\(\*persistConn\)\.(readLoop|writeLoop)$",
    r"^net/http\.\(\*http2ClientConn\)\.readLoop$",
    r"^net/http\.\(\*http2serverConn\)\.serve$",
    r"^net/http\.\(\*conn\)\.serve$",
    r"^database/sql\.\(\*DB\)\.(connectionOpener|connectionCleaner|connectionResetter)$",
    r"^os/signal\.(loop|signal_recv)$",
    r"^testing\.",
    r"^context\.",
];

#[derive(Debug, Clone)]
enum Rule {
    Pattern(Pattern),
    Func(Regex),
}

/// The CI policy of one run.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Patterns that fail the run; None = `--fail-on` not given (never fail).
    fail_on: Option<Vec<Pattern>>,
    allow: Vec<Rule>,
}

fn rule(text: &str) -> Result<Rule, PolicyError> {
    if let Some(p) = patterns::lookup(text) {
        return Ok(Rule::Pattern(p));
    }
    Regex::new(text)
        .map(Rule::Func)
        .map_err(|source| PolicyError::BadRegex {
            rule: text.to_string(),
            source,
        })
}

impl Policy {
    /// `fail_on`: pattern ids/names or `all`, each possibly comma-separated. `allow`: pattern
    /// ids/names or regular expressions over function names. `allow_file`: one such rule per
    /// line (`#` comments). `defaults`: add [`DEFAULT_ALLOW`].
    pub fn new(
        fail_on: &[String],
        allow: &[String],
        allow_file: Option<&str>,
        defaults: bool,
    ) -> Result<Self, PolicyError> {
        let mut fail: Option<Vec<Pattern>> = None;
        for item in fail_on.iter().flat_map(|s| s.split(',')).map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let list = fail.get_or_insert_with(Vec::new);
            if item.eq_ignore_ascii_case("all") {
                list.extend(patterns::ALL);
            } else {
                list.push(
                    patterns::lookup(item)
                        .ok_or_else(|| PolicyError::UnknownPattern(item.to_string()))?,
                );
            }
        }
        let mut rules: Vec<String> = allow.to_vec();
        if let Some(path) = allow_file {
            let text = std::fs::read_to_string(path).map_err(|source| PolicyError::File {
                path: path.to_string(),
                source,
            })?;
            rules.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
        }
        if defaults {
            rules.extend(DEFAULT_ALLOW.iter().map(|s| s.to_string()));
        }
        let allow = rules.iter().map(|r| rule(r)).collect::<Result<_, _>>()?;
        Ok(Self {
            fail_on: fail,
            allow,
        })
    }

    /// Whether a finding is allowed: its pattern is allowed, or a rule matches the function it
    /// blocked in or the function whose `go` statement created it. (Not the start function: a
    /// test's body runs in a goroutine started at testing.tRunner, and its deadlocks are the
    /// test's own.)
    pub fn allows(&self, f: &Finding) -> bool {
        self.allow.iter().any(|r| match r {
            Rule::Pattern(p) => p.id == f.pattern,
            Rule::Func(re) => {
                f.blocked_at
                    .as_ref()
                    .is_some_and(|b| re.is_match(&b.function))
                    || f.created_by
                        .as_ref()
                        .is_some_and(|c| re.is_match(&c.function))
            }
        })
    }

    /// Whether a finding that is not allowed fails the run.
    pub fn fails(&self, f: &Finding) -> bool {
        self.fail_on
            .as_ref()
            .is_some_and(|l| l.iter().any(|p| p.id == f.pattern))
    }

    pub fn gates(&self) -> bool {
        self.fail_on.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{BlockingSite, Text};

    fn finding(pattern: Pattern, function: &str) -> Finding {
        Finding {
            blocked_at: Some(std::sync::Arc::new(BlockingSite {
                function: Text::from(function),
                location: Text::from("/x.go:1"),
            })),
            ..Finding::new(pattern, "observed", vec![7], String::new())
        }
    }

    #[test]
    fn fail_on_and_allow() {
        let p = Policy::new(
            &["BP03,chan-send-full".into()],
            &["^main\\.ticker$".into(), "select-no-cases".into()],
            None,
            true,
        )
        .unwrap();
        assert!(p.gates());
        let recv = finding(patterns::CHAN_RECV_NO_SENDER, "main.worker");
        assert!(p.fails(&recv) && !p.allows(&recv));
        assert!(!p.fails(&finding(patterns::CHAN_SEND_NO_RECEIVER, "main.w")));
        assert!(p.allows(&finding(patterns::CHAN_RECV_NO_SENDER, "main.ticker")));
        assert!(p.allows(&finding(patterns::SELECT_NO_CASES, "main.main")));
        // The default allowlist: an idle keep-alive connection.
        let idle = finding(
            patterns::SELECT_ALL_BLOCKED,
            "net/http.(*persistConn).readLoop",
        );
        assert!(p.allows(&idle));
        assert!(!Policy::new(&[], &[], None, false).unwrap().allows(&idle));
        let mut in_test = finding(patterns::CHAN_RECV_NO_SENDER, "testing.(*T).Run");
        assert!(p.allows(&in_test));
        std::sync::Arc::make_mut(in_test.blocked_at.as_mut().unwrap()).function =
            Text::from("main.TestPipeline");
        assert!(!p.allows(&in_test));
    }

    #[test]
    fn all_and_errors() {
        let p = Policy::new(&["all".into()], &[], None, false).unwrap();
        assert!(p.fails(&finding(patterns::CASCADE, "f")));
        assert!(!Policy::default().gates());
        assert!(matches!(
            Policy::new(&["BP99".into()], &[], None, false),
            Err(PolicyError::UnknownPattern(_))
        ));
        assert!(matches!(
            Policy::new(&[], &["(".into()], None, false),
            Err(PolicyError::BadRegex { .. })
        ));
    }
}
