//! Running relaytop in a pseudo-terminal: the child gets the pty as its controlling terminal
//! (stdin, stdout and stderr), a thread collects everything it writes, and the test reads the
//! terminal's modes (termios) from the master side.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{OpenptyResult, Winsize, openpty};
use nix::sys::signal::{Signal, kill};
use nix::sys::termios::{LocalFlags, Termios, tcgetattr};
use nix::unistd::Pid;

/// A child process on a pseudo-terminal.
pub struct PtyChild {
    pub child: Child,
    master: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
    writer: std::fs::File,
}

impl PtyChild {
    /// Starts `command` on a new `cols` x `rows` pseudo-terminal.
    pub fn spawn(mut command: Command, cols: u16, rows: u16) -> PtyChild {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let OpenptyResult { master, slave } = openpty(Some(&size), None).expect("openpty");
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the pty"));
        command
            .stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave))
            .env("TERM", "xterm-256color");
        // SAFETY: only async-signal-safe calls between fork and exec: a new session, and the
        // pty (stdin) as its controlling terminal.
        #[allow(unsafe_code)] // pre_exec: see SAFETY above
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn on the pty");
        // Only the child holds the slave now: reading the master ends when it exits.
        drop(slave);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = std::fs::File::from(master.try_clone().expect("dup the master"));
        let writer = std::fs::File::from(master.try_clone().expect("dup the master"));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 << 10];
            // EIO once the child and every copy of the slave are gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PtyChild {
            child,
            master,
            output,
            writer,
        }
    }

    /// Everything the child wrote so far.
    pub fn output(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    /// Waits up to `limit` for `needle` in the output.
    pub fn wait_for(&self, needle: &[u8], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if contains(&self.output.lock().unwrap(), needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Types `bytes` on the terminal.
    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.writer.write_all(bytes).expect("write to the pty");
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal the child");
    }

    /// Waits up to `limit` for the child to exit (kills it after).
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the reader take the last bytes.
                std::thread::sleep(Duration::from_millis(200));
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// The terminal's modes now (read through the master side).
    pub fn termios(&self) -> Termios {
        tcgetattr(self.master.as_fd()).expect("tcgetattr on the pty")
    }

    /// Whether the terminal is in raw mode (no line editing, no echo).
    pub fn is_raw(&self) -> bool {
        let flags = self.termios().local_flags;
        !flags.contains(LocalFlags::ICANON) && !flags.contains(LocalFlags::ECHO)
    }

    /// Whether line editing and echo are on (a terminal as a shell wants it).
    pub fn is_cooked(&self) -> bool {
        let flags = self.termios().local_flags;
        flags.contains(LocalFlags::ICANON) && flags.contains(LocalFlags::ECHO)
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where `needle` last occurs.
pub fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}
