//! Transient vs permanent AppFlow error messages.
//!
//! AppFlow reports a failed run as free text (the End report's `error`, or the execution
//! record's `executionMessage`), so the judgement is a table of case-insensitive substrings.
//! Permanent rows are checked first: a message naming both a bad field and a timeout is not
//! going to succeed on retry. A message matching no row counts as **transient**: retrying a
//! bounded number of times costs little, while failing a multi-day backfill on an unfamiliar
//! hiccup costs an operator.
//!
//! | verdict | substring (case-insensitive) | typical cause |
//! |---|---|---|
//! | permanent | `INVALID_SESSION_ID`, `Session expired`, `invalid_grant`, `expired access token`, `expired refresh token`, `token has expired`, `ConnectorAuthentication` | connection needs re-authorisation |
//! | permanent | `Access Denied`, `AccessDenied`, `not authorized`, `Insufficient privileges`, `INSUFFICIENT_ACCESS`, `Forbidden` | missing permissions (IAM, KMS, SaaS profile) |
//! | permanent | `INVALID_FIELD`, `INVALID_TYPE`, `No such column`, `does not exist`, `not found`, `ResourceNotFound`, `ValidationException`, `Invalid` | bad object, field, profile or flow definition |
//! | permanent | `ServiceQuotaExceeded`, `quota` | account limit: needs a quota increase |
//! | transient | `Rate exceeded`, `Throttl`, `REQUEST_LIMIT_EXCEEDED`, `Too Many Requests`, `429` | API rate limits |
//! | transient | `timeout`, `timed out` | slow source |
//! | transient | `ServiceUnavailable`, `Service Unavailable`, `InternalServer`, `Internal Server Error`, `Connection reset`, `500`, `502`, `503`, `504` | source or AWS outage |
//! | transient | anything else | unknown: retried within the budget |

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transience {
    Transient,
    Permanent,
}

impl Transience {
    pub fn is_transient(self) -> bool {
        self == Self::Transient
    }
}

/// Permanent substrings, lower-cased. Checked before [`TRANSIENT`].
pub const PERMANENT: &[&str] = &[
    // authentication
    "invalid_session_id",
    "session expired",
    "invalid_grant",
    "expired access token",
    "expired refresh token",
    "token has expired",
    "connectorauthentication",
    // authorisation
    "access denied",
    "accessdenied",
    "not authorized",
    "insufficient privileges",
    "insufficient_access",
    "forbidden",
    // definition
    "invalid_field",
    "invalid_type",
    "no such column",
    "does not exist",
    "not found",
    "resourcenotfound",
    "validationexception",
    "invalid",
    // quotas
    "servicequotaexceeded",
    "quota",
];

/// Transient substrings, lower-cased. Informational: unknown messages are transient anyway,
/// but a listed match documents intent and wins over nothing.
pub const TRANSIENT: &[&str] = &[
    "rate exceeded",
    "throttl",
    "request_limit_exceeded",
    "too many requests",
    "429",
    "timeout",
    "timed out",
    "serviceunavailable",
    "service unavailable",
    "internalserver",
    "internal server error",
    "connection reset",
    "500",
    "502",
    "503",
    "504",
];

/// Judges an AppFlow error message (see the module table).
pub fn classify(message: &str) -> Transience {
    let lower = message.to_ascii_lowercase();
    if PERMANENT.iter().any(|p| lower.contains(p)) {
        Transience::Permanent
    } else {
        Transience::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transience::{Permanent, Transient};

    #[test]
    fn every_table_row() {
        let cases = [
            ("INVALID_SESSION_ID: Session expired or invalid", Permanent),
            ("Session expired", Permanent),
            (
                "error=invalid_grant, expired access/refresh token",
                Permanent,
            ),
            ("expired access token", Permanent),
            ("Expired refresh token for connection sf", Permanent),
            ("The token has expired", Permanent),
            (
                "ConnectorAuthenticationException: bad credentials",
                Permanent,
            ),
            ("Access Denied", Permanent),
            ("AccessDeniedException: User is not allowed", Permanent),
            ("User is not authorized to perform kms:Decrypt", Permanent),
            ("Insufficient privileges to read Account", Permanent),
            ("INSUFFICIENT_ACCESS_OR_READONLY", Permanent),
            ("403 Forbidden", Permanent),
            (
                "INVALID_FIELD: No such column 'Foo__c' on entity 'Account'",
                Permanent,
            ),
            (
                "INVALID_TYPE: sObject type 'Acount' is not supported",
                Permanent,
            ),
            ("No such column", Permanent),
            ("Object Foo does not exist", Permanent),
            ("Connector profile sf not found", Permanent),
            ("ResourceNotFoundException", Permanent),
            ("ValidationException: bad task", Permanent),
            ("Invalid filter", Permanent),
            ("ServiceQuotaExceededException", Permanent),
            ("Flow quota reached", Permanent),
            ("Rate exceeded", Transient),
            ("ThrottlingException", Transient),
            ("Throttled by source", Transient),
            (
                "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
                Transient,
            ),
            ("429 Too Many Requests", Transient),
            ("Read timeout", Transient),
            ("Connection timed out", Transient),
            ("ServiceUnavailable", Transient),
            ("503 Service Unavailable", Transient),
            ("InternalServerException", Transient),
            ("500 Internal Server Error", Transient),
            ("Connection reset by peer", Transient),
            ("HTTP 502 Bad Gateway", Transient),
            ("504 Gateway Timeout", Transient),
            ("Something odd happened", Transient),
            ("", Transient),
        ];
        for (message, want) in cases {
            assert_eq!(classify(message), want, "{message:?}");
        }
    }

    #[test]
    fn permanent_wins_over_transient() {
        assert_eq!(classify("timeout while reading INVALID_FIELD"), Permanent);
    }

    #[test]
    fn table_entries_are_lower_case() {
        for s in PERMANENT.iter().chain(TRANSIENT) {
            assert_eq!(*s, s.to_ascii_lowercase());
        }
    }
}
