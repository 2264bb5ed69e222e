//! The rows of the error table (the module doc of `classify` renders them with sources).

use super::{Pattern, Rule, Verdict};

/// The one code whose message may override it (see rule 1 in the module doc).
pub(super) const WRAPS_CONNECTOR_ERRORS: &str = "ConnectorServerException";

/// Code rows, in the module doc's order.
pub const CODE_RULES: &[Rule] = &[
    Rule {
        verdict: Verdict::Reconnect,
        pattern: Pattern::Codes(&["ConnectorAuthenticationException"]),
        cause: "AppFlow could not authenticate with the SaaS application (401)",
        source: "botocore AppFlow model; aws-wire-facts §2.2",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Codes(&[WRAPS_CONNECTOR_ERRORS]),
        cause: "the connector endpoint failed while AppFlow read from it",
        source: "botocore AppFlow model; aws-wire-facts §2.2",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Codes(&[
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "RequestThrottledException",
            "TooManyRequestsException",
            "ProvisionedThroughputExceededException",
            "TransactionInProgressException",
            "RequestLimitExceeded",
            "BandwidthLimitExceeded",
            "LimitExceededException",
            "RequestThrottled",
            "SlowDown",
            "PriorRequestNotComplete",
            "EC2ThrottledException",
        ]),
        cause: "AWS API rate limit",
        source: "smithy-rs aws-runtime THROTTLING_ERRORS; aws-wire-facts §0",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Codes(&["RequestTimeout", "RequestTimeoutException"]),
        cause: "AWS request timed out",
        source: "smithy-rs aws-runtime TRANSIENT_ERRORS; aws-wire-facts §0",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Codes(&[
            "InternalServerException",
            "InternalFailure",
            "ServiceUnavailable",
            "ServiceUnavailableException",
        ]),
        cause: "AWS-side 500 / 503",
        source: "botocore models; AWS common errors; aws-wire-facts §2.2, §4.1",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Codes(&["Timeout", "Transport"]),
        cause: "flowpilot's own codes for a call that got no answer",
        source: "src/aws/mod.rs (effect_error)",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Codes(&["ExpiredTokenException", "ExpiredToken"]),
        cause: "flowpilot's own AWS session expired; the credentials provider refreshes it",
        source: "docs/research/iam-facts.md §7, §8 (judgement)",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Codes(&[
            "ValidationException",
            "BadRequestException",
            "UnsupportedOperationException",
        ]),
        cause: "the request or flow definition is wrong",
        source: "botocore models; aws-wire-facts §2.2, §4.1",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Codes(&["AccessDeniedException", "AccessDenied"]),
        cause: "IAM / KMS permissions missing",
        source: "botocore models; docs/research/iam-facts.md §7",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Codes(&["ResourceNotFoundException"]),
        cause: "flow, connector profile or domain missing",
        source: "botocore models; aws-wire-facts §2.2, §4.1",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Codes(&["ServiceQuotaExceededException"]),
        cause: "an account quota needs raising (402); a batch's StartFlow or CreateFlow is not judged: the shell lowers the shared budget and the batch waits",
        source: "botocore AppFlow model; aws-wire-facts §2.2",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Codes(&["ConflictException"]),
        cause: "already exists / wrong state: the same call gets the same answer",
        source: "botocore AppFlow model; aws-wire-facts §2.2",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Codes(&[
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "MissingAuthenticationTokenException",
            "InvalidRequest",
        ]),
        cause: "flowpilot's own AWS credentials are wrong, or the SDK refused the request",
        source: "docs/research/iam-facts.md §7; src/aws/mod.rs",
    },
];

/// Message rows, tried top to bottom (first match wins).
pub const MESSAGE_RULES: &[Rule] = &[
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Fragments(&["ConcurrentRequests"]),
        cause: "Salesforce's concurrent long-running request limit: clears as requests finish",
        source: "Salesforce API Request Limits and Allocations",
    },
    Rule {
        verdict: Verdict::SourceBudget,
        pattern: Pattern::Fragments(&["REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded"]),
        cause: "Salesforce's rolling 24-hour API allowance is spent",
        source: "Salesforce API Request Limits and Allocations; System Overview: API Usage; aws-wire-facts §3.1",
    },
    Rule {
        verdict: Verdict::SourceBudget,
        pattern: Pattern::Fragments(&["Daily quota reached"]),
        cause: "Marketo's daily API quota (REST error 607) is spent",
        source: "Marketo REST API error codes",
    },
    Rule {
        verdict: Verdict::Reconnect,
        pattern: Pattern::Fragments(&["INVALID_SESSION_ID", "Session expired or invalid"]),
        cause: "Salesforce refused the session (expired or revoked token)",
        source: "Salesforce REST API status codes (401); OAuth refresh token process; aws-wire-facts §5",
    },
    Rule {
        verdict: Verdict::Reconnect,
        pattern: Pattern::Fragments(&["invalid_grant", "expired access/refresh token"]),
        cause: "the refresh token is expired or revoked",
        source: "RFC 6749 §5.2; Salesforce OAuth token endpoint; AppFlow Salesforce guide",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Fragments(&["INVALID_FIELD", "No such column"]),
        cause: "the object has no such field",
        source: "Salesforce API status codes",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Fragments(&["INVALID_TYPE"]),
        cause: "the object (sObject type) does not exist or is not supported",
        source: "Salesforce API status codes",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Fragments(&["MALFORMED_QUERY"]),
        cause: "the source query (filter) is malformed",
        source: "Salesforce API status codes",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Fragments(&["INSUFFICIENT_ACCESS"]),
        cause: "the Salesforce user lacks access to the object or record",
        source: "Salesforce API status codes",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Fragments(&["is not authorized to perform"]),
        cause: "an IAM denial",
        source: "IAM user guide (troubleshoot access denied); docs/research/iam-facts.md §7",
    },
    Rule {
        verdict: Verdict::Permanent,
        pattern: Pattern::Fragments(&["does not exist"]),
        cause: "AppFlow's not-found wording",
        source: "terraform-provider-aws #27707; aws-wire-facts §5",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Fragments(&["Rate exceeded"]),
        cause: "an AWS API rate limit",
        source: "AWS ThrottlingException message; aws-wire-facts §2.2",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Fragments(&["Too Many Requests"]),
        cause: "HTTP 429",
        source: "RFC 6585 §4; cdk-appflow #107",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Fragments(&[
            "Internal Server Error",
            "Bad Gateway",
            "Service Unavailable",
            "Gateway Timeout",
        ]),
        cause: "HTTP 500 / 502 / 503 / 504",
        source: "RFC 9110 §15.6",
    },
    Rule {
        verdict: Verdict::Transient,
        pattern: Pattern::Fragments(&["timed out", "timeout", "Connection reset"]),
        cause: "transport failures",
        source: "POSIX ETIMEDOUT, ECONNRESET",
    },
];
