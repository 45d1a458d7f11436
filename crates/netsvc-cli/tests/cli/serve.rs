//! `netsvc serve`: a method answered by a shell command.

use std::time::{Duration, Instant};

use crate::util::*;

/// A `serve` process for `SERVICE METHOD`, with these options and command; returns once the
/// service is visible at `address`.
fn serve(address: &str, service: &str, options: &[&str], command: &[&str]) -> Proc {
    let mut args = vec!["serve", "--connect", address];
    args.extend_from_slice(options);
    args.extend([service, "run"]);
    if !command.is_empty() {
        args.push("--");
        args.extend_from_slice(command);
    }
    let mut p = Proc::spawn(&args);
    p.wait_stderr(&format!("serving {service} run"));
    wait_for_services(address, &[service]);
    p
}

fn call(address: &str, service: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["call", "--connect", address, service, "run"];
    all.extend_from_slice(args);
    run(&all)
}

fn failure_of(output: &std::process::Output) -> Json {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    let lines = json_lines(&stderr(output));
    assert_eq!(lines.len(), 1, "{}", stderr(output));
    lines.into_iter().next().expect("a line")
}

#[test]
fn serve_answers_with_the_commands_output() {
    let (_hub, address) = hub();
    // The arguments arrive on stdin as a JSON array; JSON output is the result.
    let mut cat = serve(&address, "t-cat", &[], &["cat"]);
    let output = call(&address, "t-cat", &["1", "\"two\"", r#"{"a":[true]}"#]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "[1,\"two\",{\"a\":[true]}]\n");

    // ...and in NETSVC_ARGS; output that is not JSON is a string.
    let _env = serve(
        &address,
        "t-env",
        &[],
        &["sh", "-c", "echo \"got $NETSVC_METHOD $NETSVC_ARGS\""],
    );
    let output = call(&address, "t-env", &["5"]);
    assert_eq!(stdout(&output), "\"got run [5]\"\n", "{}", stderr(&output));

    // A fixed reply needs no command.
    let _fixed = serve(&address, "t-fixed", &["--reply", r#"{"ok":true}"#], &[]);
    let output = call(&address, "t-fixed", &["ignored"]);
    assert_eq!(stdout(&output), "{\"ok\":true}\n", "{}", stderr(&output));

    // SIGTERM withdraws the service: callers then get 46, not a hang.
    cat.signal("TERM");
    assert_eq!(cat.wait_exit().code(), Some(0));
    let f = failure_of(&call(&address, "t-cat", &[]));
    assert_eq!(f["error"], 46, "{f}");
    cat.assert_clean_stderr();
}

#[test]
fn a_failing_or_slow_command_is_a_failure_not_a_hang() {
    let (_hub, address) = hub();
    // A non-zero exit status is the failure's code; stderr is its details.
    let _fail = serve(
        &address,
        "t-fail",
        &[],
        &["sh", "-c", "echo 'out of paper' >&2; exit 7"],
    );
    let f = failure_of(&call(&address, "t-fail", &[]));
    assert_eq!(f["error"], 7, "{f}");
    assert_eq!(f["origin"], "serve", "{f}");
    assert!(
        f["details"]
            .as_str()
            .expect("details")
            .contains("out of paper"),
        "{f}"
    );

    // Past --timeout the command is killed (with what it started) and the caller told 47.
    let _slow = serve(
        &address,
        "t-slow",
        &["--timeout", "0.5"],
        &["sh", "-c", "sleep 30; echo late"],
    );
    let started = Instant::now();
    let f = failure_of(&call(&address, "t-slow", &[]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(f["error"], 47, "{f}");
    assert_eq!(f["origin"], "serve", "{f}");

    // A command that cannot be found is refused before anything is served.
    let output = run(&[
        "serve",
        "--connect",
        &address,
        "x",
        "run",
        "--",
        "no-such-command-here",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no-such-command-here"),
        "{}",
        stderr(&output)
    );
    // Either a command or --reply.
    let output = run(&["serve", "--connect", &address, "x", "run"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn serve_runs_at_most_jobs_commands_at_once() {
    let (_hub, address) = hub();
    let _one = serve(
        &address,
        "t-one",
        &["--jobs", "1", "--timeout", "10"],
        &["sh", "-c", "sleep 0.4; echo done"],
    );
    let started = Instant::now();
    let calls: Vec<std::thread::JoinHandle<std::process::Output>> = (0..3)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || call(&address, "t-one", &[]))
        })
        .collect();
    for c in calls {
        let output = c.join().expect("join");
        assert_eq!(stdout(&output), "\"done\"\n", "{}", stderr(&output));
    }
    // One at a time: three runs of 0.4 s take at least 1.2 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
}
