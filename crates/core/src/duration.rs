//! ISO-8601 durations. CONTRACT: `IsoDuration { months, days, seconds }`, `FromStr` + `Display`
//! (serde as the string form), `add_to(start, times) -> DateTime` computed from the anchor.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IsoDuration {
    pub months: u32,
    pub days: u32,
    pub seconds: u64,
}
