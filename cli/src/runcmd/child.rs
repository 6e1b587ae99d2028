//! The command `quiver run` starts: its output passed through to the terminal and kept in
//! files that are uploaded as the run's `logs/stdout.txt` and `logs/stderr.txt` every few
//! seconds while it runs (so they can be read from the server during the run) and at its end;
//! SIGINT and SIGTERM sent to `quiver run` passed on to it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ending {
    /// Its exit code (for a signal, 128 + the signal's number, as shells report it).
    pub(crate) code: i32,
    /// Whether it ended because `quiver run` was interrupted (SIGINT/SIGTERM).
    pub(crate) interrupted: bool,
}

/// One of the command's output streams, teed to a file.
#[derive(Debug)]
pub(crate) struct Captured {
    /// The run's artifact path it is uploaded to (`logs/stdout.txt`).
    pub(crate) artifact: &'static str,
    pub(crate) file: Arc<Mutex<File>>,
    /// Written to since the last upload.
    pub(crate) dirty: Arc<AtomicBool>,
}

impl Captured {
    fn new(artifact: &'static str) -> anyhow::Result<Captured> {
        Ok(Captured {
            artifact,
            file: Arc::new(Mutex::new(tempfile::tempfile()?)),
            dirty: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The bytes captured so far, read from the start while the tee may go on writing: the
    /// reader reads at offsets of its own (`pread`), never moving the file position the tee
    /// appends at.
    pub(crate) fn reader(&self) -> anyhow::Result<impl Read> {
        let file = self.file.lock().expect("not poisoned").try_clone()?;
        Ok(ReadAt { file, pos: 0 })
    }
}

/// A reader of a file at its own offsets.
struct ReadAt {
    file: File,
    pos: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Copies `from` to `to` (the terminal) and to `into`'s file, chunk by chunk.
fn tee(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    into: &Captured,
) -> JoinHandle<()> {
    let (file, dirty) = (Arc::clone(&into.file), Arc::clone(&into.dirty));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let _ = to.write_all(&buf[..n]);
            let _ = to.flush();
            let mut f = file.lock().expect("not poisoned");
            let _ = f.seek(SeekFrom::End(0));
            let _ = f.write_all(&buf[..n]);
            dirty.store(true, Ordering::Release);
        }
    })
}

/// A started command.
#[derive(Debug)]
pub(crate) struct Running {
    child: Child,
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
    tees: Vec<JoinHandle<()>>,
    /// The last signal passed on to the command (0: none).
    forwarded: Arc<AtomicI32>,
    signals: signal_hook::iterator::Handle,
    signal_thread: Option<JoinHandle<()>>,
}

/// Starts `command` (program and arguments) with `env` added to the environment.
pub(crate) fn start(command: &[String], env: &[(String, String)]) -> anyhow::Result<Running> {
    let (program, args) = command.split_first().context("no command to run")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let stdout = Captured::new("logs/stdout.txt")?;
    let stderr = Captured::new("logs/stderr.txt")?;
    let tees = vec![
        tee(
            child.stdout.take().expect("piped"),
            std::io::stdout(),
            &stdout,
        ),
        tee(
            child.stderr.take().expect("piped"),
            std::io::stderr(),
            &stderr,
        ),
    ];
    // SIGINT from the terminal reaches the whole foreground process group, the command too:
    // only signals sent to this process alone (kill, a scheduler) are passed on.
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let forwarded = Arc::new(AtomicI32::new(0));
    let pid = child.id() as libc::pid_t;
    let seen = Arc::clone(&forwarded);
    let signal_thread = std::thread::spawn(move || {
        for info in signals.forever() {
            seen.store(info.signal, Ordering::Release);
            if info.process.is_some() || info.signal == SIGTERM {
                // SAFETY: kill(2) on the child's pid with a valid signal number.
                unsafe {
                    libc::kill(pid, info.signal);
                }
            }
        }
    });
    Ok(Running {
        child,
        stdout,
        stderr,
        tees,
        forwarded,
        signals: handle,
        signal_thread: Some(signal_thread),
    })
}

impl Running {
    /// The command's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the command to end, calling `tick` every `every` meanwhile (live log uploads).
    pub(crate) fn wait(
        mut self,
        every: Duration,
        mut tick: impl FnMut(&Running),
    ) -> anyhow::Result<(Ending, Captured, Captured)> {
        let mut last = Instant::now();
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= every {
                last = Instant::now();
                tick(&self);
            }
        };
        for t in self.tees.drain(..) {
            let _ = t.join();
        }
        self.signals.close();
        if let Some(t) = self.signal_thread.take() {
            let _ = t.join();
        }
        use std::os::unix::process::ExitStatusExt;
        let code = match (status.code(), status.signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 1,
        };
        let interrupted = self.forwarded.load(Ordering::Acquire) != 0
            || matches!(status.signal(), Some(SIGINT) | Some(SIGTERM));
        Ok((Ending { code, interrupted }, self.stdout, self.stderr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_reads_whole_while_the_tee_appends() {
        let log = Captured::new("logs/stdout.txt").unwrap();
        let tee = tee(&b"first line\n"[..], std::io::sink(), &log);
        tee.join().unwrap();
        let mut reader = log.reader().unwrap();
        let mut first = [0u8; 5];
        reader.read_exact(&mut first).unwrap();
        // The tee appends meanwhile: the reader's place is its own.
        tee_more(&log, b"second\n");
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(
            format!("{}{rest}", String::from_utf8_lossy(&first)),
            "first line\nsecond\n"
        );
        assert!(log.dirty.load(Ordering::Acquire));
    }

    fn tee_more(log: &Captured, bytes: &'static [u8]) {
        tee(bytes, std::io::sink(), log).join().unwrap();
    }
}
