//! Interface names as the command line gives them: a literal name, or a shell-style pattern.

use std::{fmt, str::FromStr};

use thiserror::Error;

/// A name given to a flag that is not a valid pattern.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{flag} {pattern:?} is not a valid pattern: {reason}")]
pub struct BadPattern {
    pub pattern: String,
    pub flag: &'static str,
    pub reason: String,
}

/// An interface name as given to `--iface`, `--exclude` or `--drop-on`: a literal name, or a
/// shell-style pattern when it has `*`, `?` or `[`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePattern {
    Name(String),
    Glob(glob::Pattern),
}

impl NamePattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Name(literal) => literal == name,
            Self::Glob(pattern) => pattern.matches(name),
        }
    }

    pub(crate) const fn is_glob(&self) -> bool {
        matches!(self, Self::Glob(_))
    }

    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Self::Name(name) => Some(name),
            Self::Glob(_) => None,
        }
    }
}

impl FromStr for NamePattern {
    type Err = glob::PatternError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.contains(['*', '?', '[']) {
            glob::Pattern::new(value).map(Self::Glob)
        } else {
            Ok(Self::Name(value.to_owned()))
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Glob(pattern) => f.write_str(pattern.as_str()),
        }
    }
}

/// Interface names given to a flag as plain strings, each a name or a pattern.
#[derive(Debug)]
pub struct NamePatterns(Vec<NamePattern>);

impl NamePatterns {
    pub fn new(values: &[String], flag: &'static str) -> Result<Self, BadPattern> {
        values
            .iter()
            .map(|value| {
                value
                    .parse()
                    .map_err(|error: glob::PatternError| BadPattern {
                        pattern: value.clone(),
                        flag,
                        reason: error.msg.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The first literal name that is not among `names`.
    pub fn unknown_literal<'a>(
        &self,
        names: impl Iterator<Item = &'a str> + Clone,
    ) -> Option<&str> {
        self.0
            .iter()
            .filter_map(NamePattern::name)
            .find(|literal| !names.clone().any(|name| name == *literal))
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(name))
    }
}
