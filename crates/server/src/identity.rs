//! The secrets berth keeps outside the store, in the data directory: the root access key, and
//! the key that signs pagination tokens. They live in a file rather than the store so that
//! `POST /_berth/reset`, which wipes the store, does not invalidate the user's AWS profile.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    root: RootKey,
    token_key: String,
}

pub struct Identity {
    pub root: RootKey,
    pub token_key: [u8; 32],
    /// Whether this start created the key (so it is printed once).
    pub created: bool,
    pub path: PathBuf,
}

const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(alphabet[(rng.next_u32() as usize) % alphabet.len()]))
        .collect()
}

impl Identity {
    pub fn load_or_create(data_dir: &Path, account_id: &str) -> std::io::Result<Identity> {
        let path = data_dir.join("identity.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let f: File = serde_json::from_str(&text).map_err(std::io::Error::other)?;
            let key = hex::decode(&f.token_key).map_err(std::io::Error::other)?;
            let token_key: [u8; 32] = key
                .try_into()
                .map_err(|_| std::io::Error::other("token key must be 32 bytes"))?;
            let mut root = f.root;
            // The account is configuration: a restart with another --account-id moves the key.
            root.account_id = account_id.to_string();
            return Ok(Identity {
                root,
                token_key,
                created: false,
                path,
            });
        }
        let mut token_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut token_key);
        // AWS access key ids are 20 characters starting with AKIA; secrets 40 characters.
        let root = RootKey {
            access_key_id: format!("AKIA{}", random_string(ALPHA, 16)),
            secret_access_key: random_string(SECRET_ALPHA, 40),
            account_id: account_id.to_string(),
        };
        let f = File {
            root: root.clone(),
            token_key: hex::encode(token_key),
        };
        let tmp = data_dir.join("identity.json.tmp");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut file = opts.open(&tmp)?;
            file.write_all(
                serde_json::to_string_pretty(&f)
                    .map_err(std::io::Error::other)?
                    .as_bytes(),
            )?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(Identity {
            root,
            token_key,
            created: true,
            path,
        })
    }
}
