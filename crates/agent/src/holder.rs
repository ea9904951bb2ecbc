//! The image of the `awsvpc` network namespace holder. ECS uses its own pause image; berth has
//! none to pull (and may have no registry access), so on a Docker node without the image the
//! agent builds it from the host's static busybox (Debian's `busybox-static`): a root
//! filesystem holding `/bin/busybox` and `/bin/sleep`, imported as `berth/pause:1`. Without
//! either, `awsvpc` tasks fail with `CannotPullContainerError` naming the holder image, and
//! every other network mode works as before.

use berth_runtime::{Runtime, RuntimeError};
use bytes::Bytes;

/// Where Debian's `busybox-static` installs the binary.
const BUSYBOX: &str = "/bin/busybox";

/// Makes sure `image` exists, importing it from the host's busybox when it does not. Only
/// touches a Docker runtime; the fake has whatever images a test gives it.
pub async fn ensure(runtime: &Runtime, image: &str) -> Result<(), String> {
    let Runtime::Docker(docker) = runtime else {
        return Ok(());
    };
    match runtime.image(image).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        Err(e) => return Err(e.to_string()),
    }
    let busybox = match std::fs::read(BUSYBOX) {
        Ok(b) => b,
        Err(e) => {
            return Err(format!(
                "{image} is missing and cannot be built: {BUSYBOX}: {e} (install busybox-static)"
            ));
        }
    };
    let tar = rootfs(&busybox).map_err(|e| e.to_string())?;
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(tar))]);
    docker
        .import_image(image, stream)
        .await
        .map(|_| ())
        .map_err(|e: RuntimeError| e.to_string())
}

fn rootfs(busybox: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["bin", "tmp", "etc"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(u64::try_from(busybox.len()).unwrap_or(u64::MAX));
    tar.append_data(&mut h, "bin/busybox", busybox)?;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    tar.append_link(&mut h, "bin/sleep", "busybox")?;
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rootfs_holds_busybox_and_sleep() {
        let tar = super::rootfs(b"\x7fELF fake").expect("tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["bin", "tmp", "etc", "bin/busybox", "bin/sleep"]);
    }
}
