use std::process::Output;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn call_prints_the_result_as_json() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let output = run(&["call", "--connect", &address, "echo", "echo", "\"hi\""]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "\"hi\"\n");

    // JSON arguments, and text that is not JSON taken as a string.
    let output = run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "echo",
        "1",
        "2.5",
        r#"{"a":[true,null]}"#,
        "hello",
        "bad}",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "[1,2.5,{\"a\":[true,null]},\"hello\",\"bad}\"]\n"
    );

    // Text that starts like JSON and does not parse is a mistake, not a string.
    let output = run(&["call", "--connect", &address, "echo", "echo", r#"{"a":"#]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("starts like JSON"),
        "{}",
        stderr(&output)
    );

    // Special forms of the JSON mapping survive the round trip.
    let output = run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "echo",
        r#"{"$duration":"PT1.5S"}"#,
    ]);
    assert_eq!(stdout(&output), "{\"$duration\":\"PT1.5S\"}\n");
}

#[test]
fn call_reads_the_exchange_from_the_environment() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let output = netsvc()
        .env("NETSVC_EXCHANGE", &address)
        .args(["call", "echo", "echo", "42"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "42\n");
}

fn failure_of(output: &Output) -> Json {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    assert_eq!(stdout(output), "", "nothing on stdout for a failure");
    let err = stderr(output);
    let lines = json_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    let failure = lines.into_iter().next().expect("a line");
    let keys: Vec<&str> = failure
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["description", "details", "error", "origin"],
        "{failure}"
    );
    failure
}

#[test]
fn call_failures_are_four_fields_on_stderr_and_exit_1() {
    let (_hub, address) = hub();
    let _demo = demo(&address);

    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "fail",
        "7",
        "out of paper",
    ]));
    assert_eq!(f["error"], 7);
    assert_eq!(f["origin"], "demo");
    assert_eq!(f["details"], "out of paper");

    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "nosuchmethod",
    ]));
    assert_eq!(f["error"], 55);
    assert_eq!(f["origin"], "netsvc");

    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "sleep",
        "\"long\"",
    ]));
    assert_eq!(f["error"], 56);
}

#[test]
fn call_times_out_with_47() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let started = Instant::now();
    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "--timeout",
        "0.5",
        "echo",
        "sleep",
        "30",
    ]));
    assert_eq!(f["error"], 47);
    assert_eq!(f["description"], "Request Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn calling_a_missing_service_is_46_not_a_hang() {
    let (_hub, address) = hub();
    let started = Instant::now();
    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "nosuchservice",
        "anything",
    ]));
    assert_eq!(f["error"], 46);
    assert_eq!(f["description"], "Service Unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn invalid_json_where_json_is_required_is_an_error() {
    // Input is checked before connecting: no hub is needed to get the error.
    let address = format!("127.0.0.1:{}", closed_port());
    let output = run(&[
        "call",
        "--connect",
        &address,
        "--strict",
        "echo",
        "echo",
        "1",
        "{bad",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.starts_with("error: argument 2: invalid JSON"), "{err}");

    // Valid JSON that is not a valid value (a misspelt special form) is never a string.
    let output = run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "echo",
        r#"{"$dateime":"2026-01-01"}"#,
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("$dateime"), "{}", stderr(&output));

    let output = run(&[
        "publish",
        "--connect",
        &address,
        "--strict",
        "--service",
        "x",
        "s",
        "nojson",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid JSON"),
        "{}",
        stderr(&output)
    );

    let output = run(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "x",
        "bad*subject",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid subject"),
        "{}",
        stderr(&output)
    );

    let output = run(&["monitor", "--connect", &address, "clock", ""]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid pattern"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_interrupted_call_exits_130() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let mut call = Proc::spawn(&["call", "--connect", &address, "echo", "sleep", "30"]);
    // Let the request reach the service.
    std::thread::sleep(Duration::from_millis(500));
    call.signal("INT");
    assert_eq!(call.wait_exit().code(), Some(130));
    call.assert_clean_stderr();
}

/// A JSON array nested `depth` levels deep around the number 1: `[[...[1]...]]`.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn an_argument_nested_beyond_the_limit_is_an_error_never_a_string() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    // At the limit (netsvc::value::Limits::default().max_depth) it goes through, across the
    // exchange too.
    let output = run(&["call", "--connect", &address, "echo", "echo", &nested(64)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim_end(), nested(64));

    // Beyond it: an error naming the depth and the limit, strict or not. serde_json's own
    // recursion limit (128) must not turn the deeper ones into strings.
    for depth in [65, 127, 128, 129, 5000] {
        for strict in [false, true] {
            let text = nested(depth);
            let mut args = vec!["call", "--connect", &address];
            if strict {
                args.push("--strict");
            }
            args.extend(["echo", "echo", "1", &text]);
            let output = run(&args);
            let err = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "depth {depth}: {err}");
            assert_eq!(stdout(&output), "", "depth {depth}");
            assert!(
                err.starts_with(&format!(
                    "error: argument 2 is nested {depth} levels deep; the limit is 64"
                )),
                "depth {depth}: {err}"
            );
        }
    }
    // Not even well-formed, but JSON structure all the same: not a string either.
    let unclosed = "[".repeat(300);
    let output = run(&["call", "--connect", &address, "echo", "echo", &unclosed]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nested 300 levels deep"),
        "{}",
        stderr(&output)
    );
    // Brackets inside a JSON string are not nesting.
    let quoted = format!("\"{}\"", "[".repeat(300));
    let output = run(&["call", "--connect", &address, "echo", "echo", &quoted]);
    assert!(output.status.success(), "{}", stderr(&output));
    // A published value is held to the same limit.
    let output = run(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "deep",
        "s",
        &nested(200),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nested 200 levels deep"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn call_reads_its_arguments_from_a_file_or_stdin() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    // One argument of 1 MiB: more than Linux lets a single command-line argument be
    // (128 KiB).
    let big = "x".repeat(1 << 20);
    let array = serde_json::to_string(&[Json::from(big.as_str())]).expect("json");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("args.json");
    std::fs::write(&path, &array).expect("write");
    let file = path.to_str().expect("utf-8 path");

    let output = run(&[
        "call",
        "--connect",
        &address,
        "--args",
        file,
        "echo",
        "echo",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("\"{big}\"\n"));

    let output = run_with_stdin(
        &["call", "--connect", &address, "--args", "-", "echo", "echo"],
        array.as_bytes(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).len(), big.len() + 3);

    // Several arguments, in order, with the JSON mapping's special forms.
    let output = run_with_stdin(
        &["call", "--connect", &address, "--args", "-", "echo", "echo"],
        br#"[1, "two", {"$date":"2026-11-24"}]"#,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "[1,\"two\",{\"$date\":\"2026-11-24\"}]\n");

    // Bad input fails before anything is connected.
    for (input, needle) in [
        (&br#"{"a":1}"#[..], "a JSON array"),
        (b"[1,", "invalid JSON"),
        (b"[{\"$dateime\":\"x\"}]", "argument 1"),
    ] {
        let output = run_with_stdin(
            &["call", "--connect", &address, "--args", "-", "echo", "echo"],
            input,
        );
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains(needle),
            "{needle}: {}",
            stderr(&output)
        );
    }
    let deep = format!("[1,{}]", nested(300));
    let output = run_with_stdin(
        &["call", "--connect", &address, "--args", "-", "echo", "echo"],
        deep.as_bytes(),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("argument 2 is nested 300 levels deep; the limit is 64"),
        "{}",
        stderr(&output)
    );
    // Either the file or the command line, not both.
    let output = run(&[
        "call",
        "--connect",
        &address,
        "--args",
        file,
        "echo",
        "echo",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let missing = dir.path().join("missing.json");
    let output = run(&[
        "call",
        "--connect",
        &address,
        "--args",
        missing.to_str().expect("utf-8"),
        "echo",
        "echo",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("missing.json"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn call_reaches_one_instance_by_its_address() {
    let (_hub, address) = hub();
    let _one = demo(&address);
    let _two = demo(&address);
    wait_for_services(&address, &["echo"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let echoes = loop {
        let echoes: Vec<String> = services(&address)
            .iter()
            .filter(|s| s["name"] == "echo")
            .filter_map(|s| s["address"].as_str().map(str::to_owned))
            .collect();
        if echoes.len() == 2 || Instant::now() > deadline {
            break echoes;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(echoes.len(), 2, "{echoes:?}");
    for echo in &echoes {
        let output = run(&["call", "--connect", &address, echo, "echo", "\"hi\""]);
        assert!(output.status.success(), "{echo}: {}", stderr(&output));
        assert_eq!(stdout(&output), "\"hi\"\n");
    }
    let missing = format!("{}9", echoes[0].replace("!echo", ""));
    let output = run(&[
        "call",
        "--connect",
        &address,
        &format!("{missing}!echo"),
        "echo",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(failure_of(&output)["error"], 46);
}
