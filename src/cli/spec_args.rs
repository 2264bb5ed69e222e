//! Workflow spec flags shared by `workflow plan` and `workflow create` (placeholder).

#[derive(Debug, clap::Args)]
pub struct SpecArgs {
    /// A TOML spec file; flags override its values.
    #[arg(long)]
    pub spec: Option<std::path::PathBuf>,
}
