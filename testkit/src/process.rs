//! Real peer processes (servers, clients) that end with the test: each runs
//! in its own process group, and dropping the handle kills the whole group
//! and reaps the child, so a server that forked helpers leaves nothing behind
//! even when the test panics.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use rustix::process::{Pid, Signal};

/// A child process killed (with its process group) and reaped on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    command: String,
}

impl Process {
    /// Starts `cmd` as the leader of a new process group. Stdio is whatever
    /// `cmd` says (inherited by default: set `Stdio::null()` for quiet servers).
    pub fn spawn(cmd: &mut Command) -> io::Result<Process> {
        let command = format!("{cmd:?}").replace('"', "");
        let child = cmd
            .process_group(0)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start `{command}`: {e}")))?;
        Ok(Process { child, command })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The child, for its piped stdio or a custom wait.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits up to `timeout` for the process to end on its own (a client);
    /// returns its status, or None if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL to the process group and reaps the leader.
    fn kill_group(&mut self) {
        if let Some(pgid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            // The group outlives its leader while members remain; until we
            // reap the leader its pid cannot be reused, so this hits only ours.
            let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_group();
    }
}
