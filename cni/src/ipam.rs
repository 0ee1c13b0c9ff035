//! Delegation to the IPAM plugin the configuration names (`host-local`, `static`, ...),
//! the way the spec describes it: the plugin binary found on `CNI_PATH`, run with this
//! command's environment and `CNI_COMMAND` set, the same network configuration on its
//! stdin, its result (or error result) on its stdout.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use cni_plugin::{config::NetworkConfig, reply::SuccessReply};
use serde::Deserialize;

use crate::failure::Failure;

/// An error result as a plugin prints it.
#[derive(Deserialize)]
struct PluginError {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Runs the IPAM plugin of `config` for `command` (`ADD`, `DEL` or `CHECK`); returns
/// its result for ADD, `None` for the others (or when the configuration has no IPAM).
pub fn delegate(
    command: &str,
    config: &NetworkConfig,
    path: &[PathBuf],
) -> Result<Option<SuccessReply>, Failure> {
    let Some(ipam) = &config.ipam else {
        return Ok(None);
    };
    let plugin = &ipam.plugin;
    if plugin.is_empty() || plugin.contains('/') {
        return Err(Failure::invalid_config(format!(
            "ipam.type {plugin:?}: a plugin name (found on CNI_PATH) is needed"
        )));
    }
    let binary = find(plugin, path).ok_or_else(|| {
        Failure::io(
            format!("IPAM plugin {plugin}"),
            format!("not found on CNI_PATH ({})", join(path)),
        )
    })?;
    let input =
        serde_json::to_vec(config).map_err(|e| Failure::io("encoding the configuration", e))?;
    let mut child = Command::new(&binary)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Failure::io(format!("running {}", binary.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .map_err(|e| Failure::io(format!("writing to {}", binary.display()), e))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Failure::io(format!("running {}", binary.display()), e))?;
    if !output.status.success() {
        return Err(
            match serde_json::from_slice::<PluginError>(&output.stdout) {
                Ok(e) => Failure::delegated(plugin, e.code, &e.msg, &e.details),
                Err(_) => Failure::io(
                    format!("IPAM plugin {plugin} {command}"),
                    format!(
                        "{} without an error result: {}",
                        output.status,
                        String::from_utf8_lossy(&output.stdout).trim()
                    ),
                ),
            },
        );
    }
    if command != "ADD" {
        return Ok(None);
    }
    let result: SuccessReply = serde_json::from_slice(&output.stdout).map_err(|e| {
        Failure::io(
            format!("IPAM plugin {plugin}'s result"),
            format!("{e}: {}", String::from_utf8_lossy(&output.stdout).trim()),
        )
    })?;
    Ok(Some(result))
}

fn find(plugin: &str, path: &[PathBuf]) -> Option<PathBuf> {
    path.iter()
        .map(|dir| dir.join(plugin))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn join(path: &[PathBuf]) -> String {
    if path.is_empty() {
        return "empty".into();
    }
    path.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}
