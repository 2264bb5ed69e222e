//! `flowpilot lambda`: the worker inside AWS Lambda (see `crate::lambda`).

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Instant;

use super::worker::WorkerArgs;
use crate::lambda::LambdaError;

pub async fn run(args: WorkerArgs, started: Instant) -> anyhow::Result<ExitCode> {
    let config = super::worker::config(&args)?;
    match crate::lambda::run(config, started).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ LambdaError::Environment(_)) => Err(super::UsageError(e.to_string()).into()),
        Err(e) => Err(e.into()),
    }
}

/// The command line, with `bootstrap` (no arguments) read as `bootstrap lambda`: the
/// provided.al2023 runtime executes the zip's `bootstrap` without arguments, and the zip's
/// `bootstrap` is the flowpilot binary itself.
pub fn args(argv: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = argv.into_iter().collect();
    let invoked_as_bootstrap = argv.first().is_some_and(|first| {
        std::path::Path::new(first)
            .file_name()
            .is_some_and(|name| name == "bootstrap")
    });
    if invoked_as_bootstrap && argv.len() == 1 {
        argv.push("lambda".into());
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn bootstrap_without_arguments_runs_the_lambda() {
        assert_eq!(
            args(os(&["/var/task/bootstrap"])),
            os(&["/var/task/bootstrap", "lambda"])
        );
    }

    #[test]
    fn anything_else_is_left_alone() {
        for argv in [
            &["flowpilot"][..],
            &["/usr/local/bin/flowpilot", "worker"],
            &["bootstrap", "--help"],
            &["/opt/bootstrap-tools/flowpilot"],
        ] {
            assert_eq!(args(os(argv)), os(argv));
        }
    }
}
