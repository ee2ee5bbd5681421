//! The access log: one line per request, written whole, to a file or standard error.
//!
//! `2026-12-02T01:02:03.456Z 127.0.0.1:50312 laptop PUT packs/1a2b… 403 this token may not …`
//! The token's name, never its secret; `-` when none was given or it was not known.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use super::ServerError;

pub struct AccessLog {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AccessLog {
    /// Appends to `path`, or writes to standard error without one.
    pub fn open(path: Option<&Path>) -> Result<AccessLog, ServerError> {
        let out: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(File::options().create(true).append(true).open(p).map_err(|e| {
                ServerError::Config { path: p.to_path_buf(), why: format!("open the access log: {e}") }
            })?),
            None => Box::new(std::io::stderr()),
        };
        Ok(AccessLog { out: Mutex::new(out) })
    }

    pub fn request(&self, peer: SocketAddr, token: Option<&str>, method: &str, object: &str, status: u16, note: &str) {
        let now = jiff::Timestamp::now().round(jiff::Unit::Millisecond).unwrap_or_else(|_| jiff::Timestamp::now());
        let mut line = format!("{now} {peer} {} {method} {object} {status}", token.unwrap_or("-"));
        if !note.is_empty() {
            line.push(' ');
            line.extend(note.chars().map(|c| if c.is_control() { ' ' } else { c }));
        }
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A log that cannot be written must not stop the server from serving.
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}
