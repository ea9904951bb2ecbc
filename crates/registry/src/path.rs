//! The `/v2/` path grammar of the OCI Distribution Spec, parsed from the right: repository names
//! may contain `/` (and even segments such as `manifests` or `blobs`), but every endpoint ends in
//! a fixed suffix and one last segment, so the structure is read from the end and whatever is left
//! is the name. Pure: no I/O, no allocation beyond the returned strings, no panics.

use crate::digest::{Digest, DigestError};

/// Longest accepted repository name. The spec notes that many clients cap
/// `host[:port]/<name>` at 255 characters; ECR caps names at 256. Without knowing the host a
/// client used, 255 keeps berth within what both sides accept.
pub const MAX_NAME_LEN: usize = 255;

/// Longest accepted upload session id (berth issues UUIDs, 36 characters).
const MAX_UPLOAD_ID_LEN: usize = 64;

/// What a `/v2/...` path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: String, reference: Reference },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: String },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: String, id: String },
    /// `/v2/<name>/tags/list`
    TagsList { name: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: Digest },
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    #[error("no such endpoint")]
    NotFound,
    #[error("invalid repository name")]
    Name,
    #[error("invalid digest: {0}")]
    Digest(#[from] DigestError),
    #[error("invalid tag")]
    Tag,
    #[error("invalid upload id")]
    UploadId,
}

/// Parses the part of the path after `/v2/` (already percent-decoded). `""` is the base route.
pub fn parse(rest: &str) -> Result<Route, PathError> {
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let (head, last) = rest.rsplit_once('/').ok_or(PathError::NotFound)?;
    if last == "list"
        && let Some(name) = head.strip_suffix("/tags")
    {
        return Ok(Route::TagsList {
            name: name_of(name)?,
        });
    }
    if let Some(name) = head.strip_suffix("/manifests") {
        return Ok(Route::Manifest {
            name: name_of(name)?,
            reference: parse_reference(last)?,
        });
    }
    if let Some(name) = head.strip_suffix("/referrers") {
        return Ok(Route::Referrers {
            name: name_of(name)?,
            digest: Digest::parse(last)?,
        });
    }
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        let name = name_of(name)?;
        if last.is_empty() {
            return Ok(Route::UploadStart { name });
        }
        if last.len() > MAX_UPLOAD_ID_LEN
            || !last.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(PathError::UploadId);
        }
        return Ok(Route::Upload {
            name,
            id: last.to_owned(),
        });
    }
    // `POST /v2/<name>/blobs/uploads` without the trailing slash: some clients send it.
    if last == "uploads"
        && let Some(name) = head.strip_suffix("/blobs")
    {
        return Ok(Route::UploadStart {
            name: name_of(name)?,
        });
    }
    if let Some(name) = head.strip_suffix("/blobs") {
        return Ok(Route::Blob {
            name: name_of(name)?,
            digest: Digest::parse(last)?,
        });
    }
    Err(PathError::NotFound)
}

fn name_of(s: &str) -> Result<String, PathError> {
    if valid_name(s) {
        Ok(s.to_owned())
    } else {
        Err(PathError::Name)
    }
}

/// A tag or, when it contains `:`, a digest.
pub fn parse_reference(s: &str) -> Result<Reference, PathError> {
    if s.contains(':') {
        return Ok(Reference::Digest(Digest::parse(s)?));
    }
    if valid_tag(s) {
        Ok(Reference::Tag(s.to_owned()))
    } else {
        Err(PathError::Tag)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most
/// [`MAX_NAME_LEN`] bytes.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && s.split('/').all(valid_component)
}

/// One path component: lowercase alphanumeric runs joined by `.`, `_`, `__` or one or more `-`.
fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            while i < bytes.len() && is_alnum(bytes[i]) {
                i += 1;
            }
            expect_alnum = false;
            continue;
        }
        if expect_alnum {
            return false;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
        expect_alnum = true;
    }
    !expect_alnum
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    match b.split_first() {
        None => false,
        Some((first, rest)) => {
            (first.is_ascii_alphanumeric() || *first == b'_')
                && rest.len() <= 127
                && rest
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse(""), Ok(Route::Base));
        assert_eq!(parse("_catalog"), Ok(Route::Catalog));
        assert_eq!(
            parse("a/b/manifests/latest"),
            Ok(Route::Manifest {
                name: "a/b".into(),
                reference: Reference::Tag("latest".into())
            })
        );
        assert!(matches!(
            parse(&format!("x/blobs/{}", d())),
            Ok(Route::Blob { name, .. }) if name == "x"
        ));
        assert_eq!(
            parse("x/blobs/uploads/"),
            Ok(Route::UploadStart { name: "x".into() })
        );
        assert_eq!(
            parse("x/blobs/uploads"),
            Ok(Route::UploadStart { name: "x".into() })
        );
        assert_eq!(
            parse("x/blobs/uploads/abc-1"),
            Ok(Route::Upload {
                name: "x".into(),
                id: "abc-1".into()
            })
        );
        assert_eq!(
            parse("x/y/tags/list"),
            Ok(Route::TagsList { name: "x/y".into() })
        );
        assert!(matches!(
            parse(&format!("x/referrers/{}", d())),
            Ok(Route::Referrers { .. })
        ));
    }

    #[test]
    fn names_that_look_like_endpoints() {
        // The structure is read from the right, so endpoint words inside a name are fine.
        assert_eq!(
            parse("manifests/blobs/manifests/v1"),
            Ok(Route::Manifest {
                name: "manifests/blobs".into(),
                reference: Reference::Tag("v1".into())
            })
        );
        assert!(matches!(
            parse(&format!("a/blobs/uploads/blobs/{}", d())),
            Ok(Route::Blob { name, .. }) if name == "a/blobs/uploads"
        ));
        assert_eq!(
            parse("tags/tags/list"),
            Ok(Route::TagsList {
                name: "tags".into()
            })
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(parse("a/../b/manifests/x"), Err(PathError::Name));
        assert_eq!(parse("A/manifests/x"), Err(PathError::Name));
        assert_eq!(parse("a//b/manifests/x"), Err(PathError::Name));
        assert_eq!(parse("/manifests/x"), Err(PathError::Name));
        assert_eq!(parse("a-/manifests/x"), Err(PathError::Name));
        assert_eq!(parse("a___b/manifests/x"), Err(PathError::Name));
        assert_eq!(parse("a/manifests/.x"), Err(PathError::Tag));
        assert_eq!(parse("a/manifests/"), Err(PathError::Tag));
        assert!(matches!(
            parse("a/blobs/sha256:abc"),
            Err(PathError::Digest(_))
        ));
        assert!(matches!(
            parse("a/manifests/md5:abc"),
            Err(PathError::Digest(_))
        ));
        assert_eq!(parse("a/blobs/uploads/x.y"), Err(PathError::UploadId));
        assert_eq!(parse("a/nothing/x"), Err(PathError::NotFound));
        assert_eq!(parse("single"), Err(PathError::NotFound));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(parse(&format!("{long}/tags/list")), Err(PathError::Name));
    }

    #[test]
    fn name_grammar() {
        for ok in [
            "a",
            "a0",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "a/b/c",
            "0",
            "foo-bar.baz_qux",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "a.", ".a", "a..b", "a._b", "a/", "/a", "Ab", "a b", "a:b", "a_-b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn tag_grammar() {
        assert!(valid_tag("latest"));
        assert!(valid_tag("_x"));
        assert!(valid_tag(&"a".repeat(128)));
        assert!(!valid_tag(&"a".repeat(129)));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag("a/b"));
    }
}
