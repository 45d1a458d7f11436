//! A Unix socket with a file mode (`listen_unix_mode`) is never reachable before its mode is
//! in force. The tests run as root, and root ignores socket permissions, so the attacker is
//! this test binary started again as another user (`nobody`, uid 65534), connecting in a
//! tight loop while a hub binds the socket over and over. The hub is this binary again too,
//! started with umask 000: the mode a socket has before `chmod` comes from the umask, and
//! the test process's own umask cannot be changed without touching every other test.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use netsvc::{Exchange, Runtime};

/// The unprivileged user the attacker runs as.
const NOBODY: u32 = 65534;

/// How often the hub binds its socket: enough for the attacker to win the race between
/// bind and chmod many times over when the socket is reachable before its mode is set.
const BINDS: usize = 2000;

/// How many attackers connect at once.
const ATTACKERS: usize = 2;

/// Set (to the socket's path) in the environment of the attacker and of the hub.
const ATTACK_ENV: &str = "NETSVC_TEST_UNIX_ATTACK";
const HUB_ENV: &str = "NETSVC_TEST_UNIX_HUB";

/// The arguments that make this test binary run only the helper test `name`.
fn helper(name: &str) -> [&str; 5] {
    [
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]
}

/// Reads the child's stdout up to a line with `want`, failing if it ends first. (The test
/// harness may start the line with the test's name.)
fn wait_for_line(lines: &mut impl Iterator<Item = std::io::Result<String>>, want: &str) {
    for line in lines {
        if line.unwrap().contains(want) {
            return;
        }
    }
    panic!("the helper ended before saying {want:?}");
}

/// Kills a helper the test still holds when it ends, even by a failed assertion.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    fn stdout(&mut self) -> ChildStdout {
        self.0.stdout.take().unwrap()
    }
}

#[test]
fn a_socket_with_a_mode_is_never_reachable_before_the_mode_is_in_force() {
    let base = std::env::temp_dir().join(format!("netsvc-unix-mode-{}", std::process::id()));
    let dir = base.join("sockets");
    std::fs::create_dir_all(&dir).unwrap();
    // The attacker must be able to reach the socket's directory: only the socket's own mode
    // may keep it out.
    for open in [&base, &dir] {
        std::fs::set_permissions(open, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = dir.join("hub.sock");
    if std::fs::metadata(&dir).unwrap().uid() != 0 {
        // Only root may start the attacker as another user; as anyone else the test cannot
        // tell the mode's effect from its own permissions.
        eprintln!("skipped: needs root to run the attacker as uid {NOBODY}");
        std::fs::remove_dir_all(&base).unwrap();
        return;
    }
    // The helpers run a copy of this very binary: the file it was started from may have
    // been rebuilt since (a shared target directory), and `nobody` could not exec
    // `/proc/self/exe` of a root process.
    let exe = base.join("reliability");
    std::fs::copy("/proc/self/exe", &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Two attackers: one of them, at least, runs on another core than the hub's thread
    // between bind and chmod, however busy the machine is.
    let mut attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let mut attacker = Reaped(
                Command::new(&exe)
                    .args(helper("unix_socket::attacker"))
                    .env(ATTACK_ENV, &path)
                    .stdout(Stdio::piped())
                    .uid(NOBODY)
                    .gid(NOBODY)
                    .spawn()
                    .unwrap(),
            );
            let mut lines = BufReader::new(attacker.stdout()).lines();
            wait_for_line(&mut lines, "attacking");
            (attacker, lines)
        })
        .collect();

    // `sh` sets the hub's umask, then becomes the hub.
    let mut hub = Reaped(
        Command::new("sh")
            .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
            .arg(&exe)
            .args(helper("unix_socket::hub"))
            .env(HUB_ENV, &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut hub_lines = BufReader::new(hub.stdout()).lines();
    wait_for_line(&mut hub_lines, &format!("bound {BINDS} times"));
    let status = hub.0.wait().unwrap();
    assert!(status.success(), "the hub failed: {status}");

    // The attackers tell each connection they made as they make it.
    let (mut connected, mut denied) = (0, 0);
    for (mut attacker, lines) in attackers.drain(..) {
        attacker.0.kill().unwrap();
        attacker.0.wait().unwrap();
        for line in lines {
            let line = line.unwrap();
            connected += line.matches("connected").count();
            denied += line.matches("denied").count();
        }
    }
    // Not a pass by default: the attackers did find the socket at its path while it was
    // bound (and were kept out by its mode).
    assert!(denied > 0, "the attackers never met the socket");
    assert_eq!(
        connected, 0,
        "uid {NOBODY} connected {connected} times to a socket of mode 600 in {BINDS} binds"
    );
    // Nothing of the hub's is left behind: no socket, no private directory.
    let left: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir_all(&base).unwrap();
}

/// The attacker: as an unprivileged user, connects to the socket in a tight loop and says
/// so each time it gets in, and the first time the socket's mode keeps it out. It runs
/// until killed (at most a minute).
#[test]
#[ignore = "a helper that the test above runs in a process of its own"]
fn attacker() {
    let Some(path) = std::env::var_os(ATTACK_ENV) else {
        return;
    };
    println!("attacking");
    let end = Instant::now() + Duration::from_secs(60);
    let mut denied = false;
    while Instant::now() < end {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(_) => println!("connected"),
            // Said once: the attacker did meet the socket, and its mode kept it out.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !denied => {
                denied = true;
                println!("denied");
            }
            Err(_) => {}
        }
    }
}

/// The hub: binds the socket with mode 600, checks the mode, stops (which removes the
/// socket), and again, [`BINDS`] times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper that the test above runs in a process of its own"]
async fn hub() {
    let Some(path) = std::env::var_os(HUB_ENV) else {
        return;
    };
    let path = Path::new(&path);
    let rt = Runtime::new();
    for _ in 0..BINDS {
        let hub = Exchange::server(&rt).group("g").build().unwrap();
        hub.listen_unix_mode(path, Some(0o600)).await.unwrap();
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        hub.shutdown(Duration::from_secs(1)).await;
        assert!(!path.exists(), "the hub removes its socket when it stops");
    }
    println!("bound {BINDS} times");
}
