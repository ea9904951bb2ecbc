//! `upload`: one OCI blob upload (`POST /v2/<repo>/blobs/uploads/`, then one
//! `PUT <location>?digest=` with the file as the body), as the registry benchmark's curl upload
//! does, but with the body sent by the kernel from the page cache (`sendfile(2)`, through
//! rustix; `std::io::copy` would read and write 8 KiB at a time, since std never sends a file to
//! a socket with sendfile) instead of read into user space and written out again. It exists to show how much of an upload's time is the client's: curl's copy costs a
//! third of a core at 1 GB/s on the 2-core benchmark machine, where client and server share the
//! cores. Blocking std I/O, one connection per request (`Connection: close`), no retries.
//! Prints `seconds=<POST+PUT> status=<PUT's> client_cpu_s=<this process's CPU time>`.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct UploadArgs {
    /// Registry address, `host:port` on loopback.
    #[arg(long)]
    addr: SocketAddr,
    /// Repository name.
    #[arg(long, default_value = "bench/app")]
    repo: String,
    /// The blob to send.
    #[arg(long)]
    file: PathBuf,
    /// Its digest, `sha256:<hex>`.
    #[arg(long)]
    digest: String,
}

/// A response's status line and headers; the body is read and dropped.
struct Answer {
    status: u16,
    location: Option<String>,
}

/// Sends one request whose headers are `head` (ending in the blank line) and, after them, `body`
/// bytes of `file` through the kernel; reads the answer to the end of the connection.
fn exchange(addr: SocketAddr, head: &str, body: Option<(&std::fs::File, u64)>) -> Result<Answer> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.write_all(head.as_bytes())?;
    if let Some((file, size)) = body {
        let mut offset = 0u64;
        while offset < size {
            let left = usize::try_from(size - offset).unwrap_or(usize::MAX);
            match rustix::fs::sendfile(&stream, file, Some(&mut offset), left) {
                Ok(0) => bail!("the file ended at {offset} of {size} bytes"),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).context("sending the body"),
            }
        }
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut location = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("location")
        {
            location = Some(value.trim().to_owned());
        }
    }
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(Answer { status, location })
}

/// CPU time this (single-threaded) process has had, from the scheduler's own accounting.
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/schedstat")?;
    let ns: f64 = stat
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .context("reading /proc/self/schedstat")?;
    Ok(ns / 1e9)
}

/// The path and query of `location`, which may be absolute (`http://host:port/...`) or not.
fn path_of(location: &str) -> &str {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => location,
    }
}

pub fn upload(a: UploadArgs) -> Result<()> {
    let file =
        std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let size = file.metadata()?.len();
    let host = a.addr;
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let post = format!(
        "POST /v2/{}/blobs/uploads/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        a.repo
    );
    let opened = exchange(a.addr, &post, None)?;
    if opened.status != 202 {
        bail!("POST upload: status {}", opened.status);
    }
    let location = opened.location.context("POST upload: no Location")?;
    let path = path_of(&location);
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = format!(
        "PUT {path}{sep}digest={} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n",
        a.digest
    );
    let done = exchange(a.addr, &put, Some((&file, size)))?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    println!(
        "seconds={seconds:.6} status={} client_cpu_s={cpu:.3} bytes={size}",
        done.status
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::path_of;

    #[test]
    fn a_location_is_reduced_to_its_path_and_query() {
        assert_eq!(
            path_of("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=y"),
            "/v2/a/blobs/uploads/x?_state=y"
        );
        assert_eq!(path_of("/v2/a/blobs/uploads/x"), "/v2/a/blobs/uploads/x");
        assert_eq!(path_of("http://host"), "/");
    }
}
