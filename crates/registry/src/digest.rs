//! Content digests (`sha256:<hex>`, `sha512:<hex>`): parsing, display, and the streaming hasher
//! that checks uploaded bytes against them.

use sha2::Digest as _;
use std::fmt;

/// The hash algorithms berth accepts. The spec's grammar allows others; a registry may refuse
/// them, and berth does (`DIGEST_INVALID`), since it could not verify the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest: a supported algorithm and its lowercase hex encoding of the right length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    #[error("a digest has the form <algorithm>:<encoded>")]
    Syntax,
    #[error("digest algorithm {0:?} is not supported (sha256 and sha512 are)")]
    Unsupported(String),
    #[error("the encoded part of a {0} digest is {1} lowercase hex characters")]
    Encoding(&'static str, usize),
}

impl Digest {
    /// Parses `algorithm:encoded` per the OCI image spec's grammar, accepting sha256 and sha512.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (algorithm, encoded) = s.split_once(':').ok_or(DigestError::Syntax)?;
        if !valid_algorithm_component(algorithm)
            || encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-')
        {
            return Err(DigestError::Syntax);
        }
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::Unsupported(other.to_owned())),
        };
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::Encoding(algorithm.name(), algorithm.hex_len()));
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_owned(),
        })
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(bytes);
        h.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`
fn valid_algorithm_component(s: &str) -> bool {
    let mut prev_sep = true;
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'+' | b'.' | b'_' | b'-' if !prev_sep => prev_sep = true,
            _ => return false,
        }
    }
    !prev_sep
}

/// A running hash. Cloneable so a finished value can be taken without ending the stream.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({})", self.algorithm().name())
    }
}
