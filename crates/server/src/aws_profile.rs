//! Writes the AWS CLI profile `berth` (credentials, region and `endpoint_url`) so that
//! `AWS_PROFILE=berth aws ecs list-clusters` works with no set-up.
//!
//! A profile is only ever written when it is absent or still exactly what berth wrote last
//! time (remembered in the data directory): a profile the user edited is left alone.

use crate::{Config, Started};
use std::path::{Path, PathBuf};

const PROFILE: &str = "berth";

fn files(config: &Config) -> (PathBuf, PathBuf) {
    if let Some(dir) = &config.aws_config_dir {
        return (dir.join("credentials"), dir.join("config"));
    }
    let home = dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".aws");
    let creds = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join("credentials"));
    let conf = std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join("config"));
    (creds, conf)
}

/// An INI file as sections of lines; text outside any section is kept as it is.
struct Ini {
    sections: Vec<(Option<String>, Vec<String>)>,
}

impl Ini {
    fn read(path: &Path) -> std::io::Result<Ini> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut sections: Vec<(Option<String>, Vec<String>)> = vec![(None, vec![])];
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('[') && t.ends_with(']') {
                sections.push((Some(t[1..t.len() - 1].trim().to_string()), vec![]));
            } else if let Some(last) = sections.last_mut() {
                last.1.push(line.to_string());
            }
        }
        Ok(Ini { sections })
    }

    /// The section's `key = value` pairs, normalised, for comparison.
    fn entries(&self, name: &str) -> Option<Vec<(String, String)>> {
        let (_, lines) = self
            .sections
            .iter()
            .find(|(n, _)| n.as_deref() == Some(name))?;
        let mut out: Vec<(String, String)> = lines
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        out.sort();
        Some(out)
    }

    fn set(&mut self, name: &str, entries: &[(String, String)]) {
        let lines: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .chain(std::iter::once(String::new()))
            .collect();
        match self
            .sections
            .iter_mut()
            .find(|(n, _)| n.as_deref() == Some(name))
        {
            Some(s) => s.1 = lines,
            None => {
                if let Some(last) = self.sections.last_mut()
                    && last.1.last().is_some_and(|l| !l.trim().is_empty())
                {
                    last.1.push(String::new());
                }
                self.sections.push((Some(name.to_string()), lines));
            }
        }
    }

    fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut text = String::new();
        for (name, lines) in &self.sections {
            if let Some(n) = name {
                text.push_str(&format!("[{n}]\n"));
            }
            for l in lines {
                text.push_str(l);
                text.push('\n');
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("berth-tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

/// What berth wrote last time, per file, remembered in the data directory.
fn remembered(config: &Config) -> serde_json::Value {
    std::fs::read_to_string(config.data_dir.join("aws-profile.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes or refreshes the profile; returns a line for the user.
pub fn ensure(config: &Config, started: &Started) -> std::io::Result<String> {
    let (creds_path, conf_path) = files(config);
    let endpoint = format!("http://{}", started.addr);
    let want_creds = sorted(vec![
        ("aws_access_key_id".into(), started.access_key_id.clone()),
        (
            "aws_secret_access_key".into(),
            started.secret_access_key.clone(),
        ),
    ]);
    let want_conf = sorted(vec![
        ("region".into(), config.region.clone()),
        ("endpoint_url".into(), endpoint.clone()),
    ]);
    let last = remembered(config);
    let mut creds = Ini::read(&creds_path)?;
    let mut conf = Ini::read(&conf_path)?;
    let conf_section = format!("profile {PROFILE}");
    let ours = |have: Option<Vec<(String, String)>>, key: &str| -> bool {
        match have {
            None => true,
            Some(h) => serde_json::to_value(&h).ok().as_ref() == last.get(key),
        }
    };
    let (have_creds, have_conf) = (creds.entries(PROFILE), conf.entries(&conf_section));
    if have_creds.as_ref() == Some(&want_creds) && have_conf.as_ref() == Some(&want_conf) {
        return Ok(format!(
            "AWS CLI profile '{PROFILE}' is up to date: AWS_PROFILE={PROFILE} aws ecs list-clusters"
        ));
    }
    if !ours(have_creds, "credentials") || !ours(have_conf, "config") {
        return Ok(format!(
            "AWS CLI profile '{PROFILE}' was changed by hand; leaving it as it is (endpoint {endpoint}, key {}).",
            started.access_key_id
        ));
    }
    creds.set(PROFILE, &want_creds);
    conf.set(&conf_section, &want_conf);
    creds.write(&creds_path)?;
    conf.write(&conf_path)?;
    let memo = serde_json::json!({ "credentials": want_creds, "config": want_conf });
    std::fs::write(config.data_dir.join("aws-profile.json"), memo.to_string())?;
    Ok(format!(
        "wrote AWS CLI profile '{PROFILE}' to {} and {}: AWS_PROFILE={PROFILE} aws ecs list-clusters",
        creds_path.display(),
        conf_path.display()
    ))
}
