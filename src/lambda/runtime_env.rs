//! The environment Lambda gives a custom runtime (Lambda developer guide, "Defined runtime
//! environment variables"). `lambda_runtime` reads it with `expect`, so it is checked here
//! first: outside Lambda (or its emulator) `flowpilot lambda` exits 2 naming what is missing
//! instead of panicking.

/// Set by Lambda for every function; what `lambda_runtime` requires.
const REQUIRED: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(
        "{0} is not set: `flowpilot lambda` runs inside AWS Lambda (or a Runtime API emulator), which sets it; use `flowpilot worker` elsewhere"
    )]
    Missing(&'static str),
    #[error("{name} is `{value}`: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

pub fn check() -> Result<(), EnvError> {
    check_with(|name| std::env::var(name).ok())
}

fn check_with(get: impl Fn(&str) -> Option<String>) -> Result<(), EnvError> {
    for name in REQUIRED {
        if get(name).is_none_or(|v| v.trim().is_empty()) {
            return Err(EnvError::Missing(name));
        }
    }
    let memory = get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.parse::<i32>().is_err() {
        return Err(EnvError::Invalid {
            name: "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            value: memory,
            expected: "a number of megabytes",
        });
    }
    let api = get("AWS_LAMBDA_RUNTIME_API").unwrap_or_default();
    let url = reqwest::Url::parse(&format!("http://{api}/"));
    if api.contains('/') || url.is_err() {
        return Err(EnvError::Invalid {
            name: "AWS_LAMBDA_RUNTIME_API",
            value: api,
            expected: "HOST:PORT of the Runtime API, such as 127.0.0.1:9001",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const GOOD: [(&str, &str); 4] = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "flowpilot-worker"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ];

    #[test]
    fn the_lambda_environment_passes() {
        check_with(env(&GOOD)).unwrap();
    }

    #[test]
    fn each_missing_variable_is_named() {
        for (skip, (missing, _)) in GOOD.iter().enumerate() {
            let partial: Vec<_> = GOOD
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            let msg = check_with(env(&partial)).unwrap_err().to_string();
            assert!(msg.contains(missing), "{msg}");
            assert!(msg.contains("flowpilot worker"), "{msg}");
        }
    }

    #[test]
    fn a_runtime_api_with_a_scheme_or_a_bad_memory_size_is_refused() {
        let mut bad = GOOD;
        bad[0] = ("AWS_LAMBDA_RUNTIME_API", "http://127.0.0.1:9001");
        assert!(check_with(env(&bad)).is_err());
        let mut bad = GOOD;
        bad[2] = ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots");
        let msg = check_with(env(&bad)).unwrap_err().to_string();
        assert!(msg.contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), "{msg}");
    }
}
