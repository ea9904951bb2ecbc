//! The agent's persisted identity (`<data-dir>/agent.json`): the container instance id and node
//! token the server issued, so a restarted agent comes back as the same container instance and
//! re-adopts its containers instead of registering a new, empty one.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const FILE: &str = "agent.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The server that issued it (for people reading the file).
    pub server: String,
    pub cluster: String,
    pub instance_id: String,
    pub container_instance_arn: String,
    pub node_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid agent state: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The identity saved in `dir`, if any and if it is for `cluster`. The server's address is not
/// compared: it may change (a new port, a new name) while the server, which checks the node
/// token and answers a foreign one by asking for the join token, stays the same.
pub fn load(dir: &Path, cluster: &str) -> Result<Option<Identity>, StateError> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    let id: Identity =
        serde_json::from_str(&text).map_err(|source| StateError::Parse { path, source })?;
    Ok((id.cluster == cluster).then_some(id))
}

/// Saves `id` atomically (write a temporary file, then rename), readable by the owner only: the
/// node token is a credential.
pub fn save(dir: &Path, id: &Identity) -> Result<(), StateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let body = serde_json::to_vec_pretty(id).map_err(|source| StateError::Parse {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&tmp, body).map_err(io(&tmp))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_round_trips_and_is_scoped_to_its_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path(), "c").expect("load"), None);
        let id = Identity {
            server: "http://s".into(),
            cluster: "c".into(),
            instance_id: "i".into(),
            container_instance_arn: "arn".into(),
            node_token: "t".into(),
        };
        save(dir.path(), &id).expect("save");
        assert_eq!(load(dir.path(), "c").expect("load"), Some(id));
        assert_eq!(load(dir.path(), "other").expect("load"), None);
    }
}
