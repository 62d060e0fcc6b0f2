//! The repository against the code: the layers of `src/`, `spin.toml` and `runtime-config.toml`,
//! the files generated from the variable table, and the operations kit in `deploy/`.
//! One module per subject; see `tests/README.md`.

mod support;

#[path = "repository/architecture.rs"]
mod architecture;
#[path = "repository/deploy_kit.rs"]
mod deploy_kit;
#[path = "repository/generated.rs"]
mod generated;
#[path = "repository/manifest.rs"]
mod manifest;
