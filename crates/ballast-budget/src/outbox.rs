//! The durable outbox: settlements the store refused, on disk until the store takes them.
//!
//! An append-only text file, one settlement a line, synced before the guard moves on; the
//! guard loads it when it starts, and writes it anew (to a temporary file, then renamed)
//! after each flush, with what is still waiting. A line cut short by a crash is skipped
//! with a warning; a settlement written twice lands once, because stores settle once by id
//! (and the loader drops repeated ids).
//!
//! The format is ours and tiny (eight fields of numbers and hex), so it is written by hand:
//! `v1 <id> <window start> <window end> <reserved> <lease ms> <actual> <scope hex or ->`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ballast_cost::Usd;

use crate::{Reservation, WindowId};

/// One kept settlement: the reservation and what it settles at.
pub(crate) type Kept = (Reservation, Usd);

/// The outbox file.
#[derive(Debug)]
pub(crate) struct Outbox {
    path: PathBuf,
    /// Opened for appending on first use.
    file: Option<File>,
}

impl Outbox {
    /// The outbox at `path`, with what it holds (empty when the file does not exist).
    pub(crate) fn open(path: &Path) -> (Self, Vec<Kept>) {
        let mut kept: Vec<Kept> = Vec::new();
        match File::open(path) {
            Ok(file) => {
                for (n, line) in BufReader::new(file).lines().enumerate() {
                    let parsed = line.ok().as_deref().and_then(parse);
                    match parsed {
                        Some(entry) if !kept.iter().any(|(r, _)| r.id == entry.0.id) => {
                            kept.push(entry);
                        }
                        Some(_) => {}
                        None => tracing::warn!(
                            target: "ballast::budget",
                            path = %path.display(),
                            line = n + 1,
                            "outbox line unreadable (cut short by a crash?): skipped"
                        ),
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::error!(
                target: "ballast::budget",
                path = %path.display(),
                %error,
                "outbox unreadable: its settlements are not replayed"
            ),
        }
        if !kept.is_empty() {
            tracing::info!(
                target: "ballast::budget",
                path = %path.display(),
                settlements = kept.len(),
                "outbox loaded: replaying kept settlements"
            );
        }
        let outbox = Self {
            path: path.to_owned(),
            file: None,
        };
        (outbox, kept)
    }

    /// Appends one settlement and syncs it to disk.
    pub(crate) fn append(&mut self, entry: &Kept) -> io::Result<()> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(format(entry).as_bytes())?;
        file.sync_data()
    }

    /// Replaces the file's content by `kept` (nothing: the file is removed).
    pub(crate) fn rewrite(&mut self, kept: &[Kept]) -> io::Result<()> {
        self.file = None;
        if kept.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            };
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut file = File::create(&tmp)?;
            for entry in kept {
                file.write_all(format(entry).as_bytes())?;
            }
            file.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn format((reservation, actual): &Kept) -> String {
    let scope = reservation.scope.as_deref().map_or_else(
        || "-".to_owned(),
        |s| s.bytes().map(|b| format!("{b:02x}")).collect(),
    );
    format!(
        "v1 {:032x} {} {} {} {} {} {}\n",
        reservation.id,
        reservation.window.start,
        reservation.window.end,
        reservation.amount.picos(),
        reservation.lease.as_millis(),
        actual.picos(),
        scope
    )
}

fn parse(line: &str) -> Option<Kept> {
    let mut fields = line.split(' ');
    if fields.next()? != "v1" {
        return None;
    }
    let id = u128::from_str_radix(fields.next()?, 16).ok()?;
    let mut number = || fields.next()?.parse::<u64>().ok();
    let (start, end, amount, lease, actual) =
        (number()?, number()?, number()?, number()?, number()?);
    let scope = match fields.next()? {
        "-" => None,
        hex => Some(Arc::from(unhex(hex)?.as_str())),
    };
    if fields.next().is_some() {
        return None;
    }
    let reservation = Reservation {
        id,
        window: WindowId { start, end },
        scope,
        amount: Usd::from_picos(amount),
        lease: Duration::from_millis(lease),
    };
    Some((reservation, Usd::from_picos(actual)))
}

fn unhex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u128, scope: Option<&str>) -> Kept {
        let reservation = Reservation {
            id,
            window: WindowId {
                start: 86_400,
                end: 172_800,
            },
            scope: scope.map(Arc::from),
            amount: Usd::from_picos(7_000),
            lease: Duration::from_secs(600),
        };
        (reservation, Usd::from_picos(1_234))
    }

    #[test]
    fn lines_round_trip_and_torn_lines_are_skipped() {
        let dir = std::env::temp_dir().join(format!("ballast-outbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outbox");
        let _ = std::fs::remove_file(&path);
        let (mut outbox, kept) = Outbox::open(&path);
        assert!(kept.is_empty());
        let a = entry(u128::MAX - 5, Some("tenant a/é"));
        let b = entry(3, None);
        outbox.append(&a).unwrap();
        outbox.append(&b).unwrap();
        outbox.append(&a).unwrap();
        // A crash mid-write leaves half a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"v1 0000ff 12")
            .unwrap();
        let (mut outbox, kept) = Outbox::open(&path);
        assert_eq!(kept, vec![a.clone(), b.clone()], "a repeated id loads once");
        outbox.rewrite(std::slice::from_ref(&b)).unwrap();
        assert_eq!(Outbox::open(&path).1, vec![b]);
        outbox.rewrite(&[]).unwrap();
        assert!(!path.exists());
        assert_eq!(parse("v1 zz 1 2 3 4 5 -"), None);
        assert_eq!(parse("v1 01 1 2 3 4 5 - extra"), None);
    }
}
