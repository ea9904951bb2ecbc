//! Image reference normalisation: the one rule both drivers share for what a reference names.

/// Adds `:latest` to a reference that has neither a tag nor a digest. Docker's pull API pulls
/// *every* tag of a repository when given no tag, which is never what a task means.
///
/// A tag is a `:` after the last `/` (a `:` before it is a registry port).
pub fn normalize_reference(image: &str) -> String {
    if image.contains('@') {
        return image.to_owned();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// Splits a normalised reference into (repository, tag-or-digest) for the Engine API's
/// `fromImage`/`tag` pair and for import's `repo`/`tag`.
pub(crate) fn split_reference(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_splits() {
        let cases = [
            ("busybox", "busybox:latest", ("busybox", "latest")),
            ("busybox:1", "busybox:1", ("busybox", "1")),
            (
                "127.0.0.1:5000/a/b",
                "127.0.0.1:5000/a/b:latest",
                ("127.0.0.1:5000/a/b", "latest"),
            ),
            (
                "127.0.0.1:5000/a/b:v2",
                "127.0.0.1:5000/a/b:v2",
                ("127.0.0.1:5000/a/b", "v2"),
            ),
            ("r/a@sha256:00", "r/a@sha256:00", ("r/a", "sha256:00")),
        ];
        for (input, normal, split) in cases {
            let n = normalize_reference(input);
            assert_eq!(n, normal, "{input}");
            assert_eq!(split_reference(&n), split, "{input}");
        }
    }
}
