use crate::util::*;

#[test]
fn every_command_has_help_with_an_example() {
    for command in [
        &[][..],
        &["exchange"],
        &["services"],
        &["call"],
        &["publish"],
        &["monitor"],
        &["serve"],
        &["demo"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let output = run(&args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let text = stdout(&output);
        assert!(
            text.contains("Examples:"),
            "{args:?} has no example:\n{text}"
        );
        assert!(text.contains("Usage:"), "{args:?}:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2_without_a_panic() {
    for args in [
        &["nosuchcommand"][..],
        &["call"],
        &["call", "--timeout", "soon", "echo", "echo"],
        &["publish", "--service", "x", "subject-without-value"],
        &["publish", "--service", "x", "--lifetime", "-2", "s", "1"],
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--connect",
            "127.0.0.1:1",
        ],
    ] {
        let output = run(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).starts_with("error:"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}
