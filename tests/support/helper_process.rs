//! The Python helpers the tests start (the fake Stripe, the webhook receiver): spawned from the
//! project's venv, each announces `LISTENING <ports…>` as its first line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// A started helper: the process, its stdin when asked for (it exits when that closes), and the
/// ports it announced.
pub struct Started {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub ports: Vec<u16>,
}

/// Starts `script` (relative to the root) with `args` under infra/.venv's Python and waits up to
/// `wait` for its `LISTENING` line; `what` names it in failures, `installs` says what
/// infra/install.sh provides for it.
pub fn start(
    script: &str,
    args: &[&str],
    keep_stdin: bool,
    wait: Duration,
    what: &str,
    installs: &str,
) -> Started {
    let root = root();
    let python = root.join("infra/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run infra/install.sh (it installs {installs})",
        python.display()
    );
    let log = std::env::temp_dir().join(format!(
        "{}_{}.log",
        what.replace(' ', "_"),
        uuid::Uuid::new_v4()
    ));
    let mut child = Command::new(&python)
        .arg(root.join(script))
        .args(args)
        .stdin(if keep_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    let first = match rx.recv_timeout(wait) {
        Ok(Some(Ok(line))) => line,
        other => {
            let _ = child.kill();
            panic!("{what} did not start ({other:?}); log: {}", log.display())
        }
    };
    let ports = first
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("unexpected first line from {what}: {first}"))
        .split(' ')
        .map(|p| p.parse().expect("a port"))
        .collect();
    Started {
        child,
        stdin,
        ports,
    }
}
