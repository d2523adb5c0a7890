//! The machine-readable stream `run` and `status` write on stdout (`--json`, or whenever stdout
//! is not a terminal): one line per object, be it a report, a route_localnet change, an event or
//! `status` with nothing pinned. Another format is another variant here, and the flag that
//! picks it.

use std::io::IsTerminal as _;

use probe_user::output::json_line;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// A JSON object per line.
    Json,
}

impl Format {
    /// The format asked for (`--json`), or JSON when stdout is not a terminal; `None`: a view
    /// for people.
    pub(crate) fn chosen(json: bool) -> Option<Self> {
        (json || !std::io::stdout().is_terminal()).then_some(Self::Json)
    }

    /// `object` as one line of the stream.
    pub(crate) fn line(self, object: &impl Serialize) -> Vec<u8> {
        match self {
            Self::Json => json_line(object),
        }
    }
}
