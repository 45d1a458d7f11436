use crate::util::*;

#[test]
fn demo_embeds_its_own_exchange() {
    let mut demo = Proc::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let line = demo.wait_stderr("listening on ");
    let address = line.split_whitespace().nth(2).expect("address").to_owned();
    demo.wait_stderr("demo ready");
    wait_for_services(&address, &["echo", "clock"]);
    let output = run(&["call", "--connect", &address, "clock", "now"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let now: Json = serde_json::from_str(stdout(&output).trim()).expect("json");
    assert!(now["$datetime"].is_string(), "{now}");
    demo.signal("INT");
    assert_eq!(demo.wait_exit().code(), Some(0));
    demo.assert_clean_stderr();
}

#[test]
fn demo_hints_carry_the_flags_they_need() {
    let mut demo = Proc::spawn(&["demo", "--listen", "127.0.0.1:0", "-g", "team"]);
    let line = demo.wait_stderr("listening on ");
    let address = line.split_whitespace().nth(2).expect("address").to_owned();
    let hint = demo.wait_stderr("try: ");
    assert!(hint.contains(&format!("--connect {address}")), "{hint}");
    assert!(hint.contains("-g team"), "{hint}");
    // The hint works as printed.
    let output = run(&[
        "call",
        "--connect",
        &address,
        "-g",
        "team",
        "echo",
        "echo",
        "\"hi\"",
    ]);
    assert_eq!(stdout(&output), "\"hi\"\n", "{}", stderr(&output));
}
