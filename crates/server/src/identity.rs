//! The secrets berth keeps outside the store, in the data directory: the root access key, the
//! key that signs pagination tokens, and the join token agents present to register. They live in a file rather than the store so that
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
    /// Added after the first files were written, so an older file gets one on its next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    join_token: Option<String>,
}

pub struct Identity {
    pub root: RootKey,
    pub token_key: [u8; 32],
    /// The join token generated for this data directory (used unless configured).
    pub join_token: String,
    /// Whether this start created the key (so it is printed once).
    pub created: bool,
    pub path: PathBuf,
}

const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Join tokens travel on command lines and in environment variables: no characters a shell
/// would mangle.
const SECRET_ALPHA_URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

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
            let mut f: File = serde_json::from_str(&text).map_err(std::io::Error::other)?;
            let key = hex::decode(&f.token_key).map_err(std::io::Error::other)?;
            let token_key: [u8; 32] = key
                .try_into()
                .map_err(|_| std::io::Error::other("token key must be 32 bytes"))?;
            let join_token = match f.join_token.clone() {
                Some(t) => t,
                None => {
                    let t = random_string(SECRET_ALPHA_URL, 48);
                    f.join_token = Some(t.clone());
                    write(data_dir, &path, &f)?;
                    t
                }
            };
            let mut root = f.root;
            // The account is configuration: a restart with another --account-id moves the key.
            root.account_id = account_id.to_string();
            return Ok(Identity {
                root,
                token_key,
                join_token,
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
        let join_token = random_string(SECRET_ALPHA_URL, 48);
        let f = File {
            root: root.clone(),
            token_key: hex::encode(token_key),
            join_token: Some(join_token.clone()),
        };
        write(data_dir, &path, &f)?;
        Ok(Identity {
            root,
            token_key,
            join_token,
            created: true,
            path,
        })
    }
}

/// Writes the file atomically (temporary file, fsync, rename), readable by its owner only.
fn write(data_dir: &Path, path: &Path, f: &File) -> std::io::Result<()> {
    let tmp = data_dir.join("identity.json.tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&tmp)?;
        file.write_all(
            serde_json::to_string_pretty(f)
                .map_err(std::io::Error::other)?
                .as_bytes(),
        )?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
