//! `netsvc serve`: a method answered from the shell, like `nats reply`.
//!
//! For each request the command runs with the request's arguments as a JSON array on its
//! stdin (and in `NETSVC_ARGS` when small); what it prints on stdout is the result: JSON,
//! else the text as a string, nothing at all `null`. A non-zero exit status N fails the
//! request with code N (origin `serve`, stderr as the details); a command still running
//! after `--timeout` is killed with its whole process group and the caller gets 47. At most
//! `--jobs` commands run at once; a request that finds no free slot within `--timeout` gets
//! 51. With `--reply VALUE` every request gets that value and nothing is run.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use netsvc::failure::{codes, description_of};
use netsvc::{Failure, Request, Runtime, RuntimeConfig, Value, names};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;

use crate::cli::ServeArgs;
use crate::client::{self, Target};
use crate::exit;
use crate::output::status;
use crate::parse::{self, Wait};
use crate::signals::Signals;

/// The origin of the failures this command raises for its commands.
const ORIGIN: &str = "serve";

/// Arguments up to this size (as JSON) are also in `NETSVC_ARGS`; Linux refuses a single
/// environment string over 128 KiB, and a big environment crowds the command's own.
const ENV_ARGS_MAX: usize = 32 * 1024;

/// The most of a command's stdout taken as its result (the library's value size limit).
const MAX_OUTPUT: usize = netsvc::value::Limits::DEFAULT.max_size;

/// The most of a command's stderr kept for a failure's details.
const MAX_STDERR: usize = 4096;

/// How many requests may wait for a free slot beyond the running ones before further ones
/// are refused at once with 51 (by the library).
const MAX_WAITING: usize = 1024;

/// What answers the requests.
#[derive(Debug)]
enum Answer {
    Reply(Value),
    Run(Runner),
}

pub(crate) async fn run(args: ServeArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    if args.service.is_empty() {
        bail!("SERVICE needs a name (callers address services by name)");
    }
    names::check_service_name(&args.service)
        .with_context(|| format!("invalid service name {:?}", args.service))?;
    names::check_method_name(&args.method)
        .with_context(|| format!("invalid method name {:?}", args.method))?;
    let jobs = usize::try_from(args.jobs).unwrap_or(1).max(1);
    let (answer, doing) = match (&args.reply, args.command.split_first()) {
        (Some(text), _) => {
            let value = parse::value(text, false, "--reply")?;
            (Answer::Reply(value), format!("replying {text}"))
        }
        (None, Some((program, rest))) => {
            let path = find_program(program)?;
            let runner = Runner {
                program: program.clone(),
                path,
                args: rest.to_vec(),
                service: args.service.clone(),
                timeout: args.timeout,
                jobs,
                slots: Arc::new(Semaphore::new(jobs)),
            };
            let doing = format!(
                "running {} ({jobs} at a time, at most {:.1} s each)",
                args.command.join(" "),
                args.timeout.as_secs_f64()
            );
            (Answer::Run(runner), doing)
        }
        (None, None) => bail!("give a COMMAND after `--`, or --reply VALUE"),
    };
    let answer = Arc::new(answer);

    let mut config = RuntimeConfig::default();
    config.max_requests_in_progress = jobs + MAX_WAITING;
    let rt = Runtime::with_config(config)?;
    let target = Target::of(&args.connect, Wait(None));
    let exchange = client::client_exchange(&rt, &target)?;
    let conn = client::link(rt.clone(), exchange, target, signals).await?;
    let reporter = client::report_link_changes(&conn);
    let service = rt
        .service(&args.service)
        .export(&args.method, move |req| {
            let answer = answer.clone();
            async move {
                match &*answer {
                    Answer::Reply(value) => Ok(value.clone()),
                    Answer::Run(runner) => runner.answer(req).await,
                }
            }
        })
        .build()?;
    status(format_args!(
        "serving {} {} through {}: {doing}",
        args.service,
        args.method,
        conn.address()
    ));

    // A hub with users may refuse the name: then nothing reaches this service, and
    // running on would only look like serving.
    let stop = tokio::select! {
        stop = signals.recv() => stop,
        why = service.refused() => {
            drop(reporter);
            conn.close().await;
            drop(service);
            anyhow::bail!("not serving {}: {why}", args.service);
        }
    };
    status(format_args!(
        "{}: withdrawing {}",
        stop.name(),
        args.service
    ));
    drop(reporter);
    // Withdraws the service ("process exit"); commands still running are killed as their
    // requests are dropped.
    conn.close().await;
    drop(service);
    Ok(exit::OK)
}

/// Where `program` is: a path as given, or the first executable of that name in `PATH`.
fn find_program(program: &str) -> anyhow::Result<PathBuf> {
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        if executable(&path) {
            return Ok(path);
        }
        bail!("cannot run {program:?}: not an executable file");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
        .with_context(|| format!("cannot run {program:?}: not found in PATH"))
}

/// Runs the command for each request.
#[derive(Debug)]
struct Runner {
    /// The command as given, for messages.
    program: String,
    path: PathBuf,
    args: Vec<String>,
    service: String,
    timeout: Duration,
    jobs: usize,
    slots: Arc<Semaphore>,
}

impl Runner {
    async fn answer(&self, req: Request) -> Result<Value, Failure> {
        let wait = tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await;
        let _slot = match wait {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(Failure::withdrawn()),
            Err(_) => {
                return Err(failure(
                    codes::RESOURCE_UNAVAILABLE,
                    format!(
                        "all {} command slots stayed busy for {:.1} s",
                        self.jobs,
                        self.timeout.as_secs_f64()
                    ),
                ));
            }
        };
        let args: Vec<serde_json::Value> = req
            .args()
            .iter()
            .map(netsvc::value::json::to_json)
            .collect();
        let args = serde_json::Value::Array(args).to_string();

        let mut command = tokio::process::Command::new(&self.path);
        command
            .args(&self.args)
            .env("NETSVC_SERVICE", &self.service)
            .env("NETSVC_METHOD", req.method())
            .env("NETSVC_SENDER", req.sender().map_or("", |b| b.address()))
            .env("NETSVC_USER", req.user().unwrap_or(""))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills what it started too.
            .process_group(0)
            .kill_on_drop(true);
        if args.len() <= ENV_ARGS_MAX {
            command.env("NETSVC_ARGS", &args);
        } else {
            command.env_remove("NETSVC_ARGS");
        }
        let mut child = command.spawn().map_err(|e| {
            failure(
                codes::APPLICATION_ERROR,
                format!("cannot run {}: {e}", self.program),
            )
        })?;
        let mut group = KillGroup(child.id());
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let write = async move {
            if let Some(mut stdin) = stdin {
                // A command that does not read its stdin closes it: not an error.
                let _ = stdin.write_all(args.as_bytes()).await;
                let _ = stdin.write_all(b"\n").await;
            }
        };
        let finished = async {
            let (status, out, err, ()) = tokio::join!(
                child.wait(),
                read_bounded(stdout, MAX_OUTPUT),
                read_bounded(stderr, MAX_STDERR),
                write
            );
            (status, out, err)
        };
        let Ok((status, out, err)) = tokio::time::timeout(self.timeout, finished).await else {
            // `group` and `child` are dropped: the command and its process group are killed.
            return Err(failure(
                codes::REQUEST_TIMEOUT,
                format!(
                    "{} did not finish within {:.1} s and was killed",
                    self.program,
                    self.timeout.as_secs_f64()
                ),
            ));
        };
        group.0 = None;
        let status = status.map_err(|e| {
            failure(
                codes::APPLICATION_ERROR,
                format!("lost track of {}: {e}", self.program),
            )
        })?;
        self.outcome(status, out, &err)
    }

    /// The result or failure that a finished command stands for.
    fn outcome(&self, status: ExitStatus, out: Output, err: &Output) -> Result<Value, Failure> {
        let stderr = String::from_utf8_lossy(&err.bytes).trim().to_owned();
        if !status.success() {
            let said = if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            };
            return Err(match status.code() {
                Some(code) => Failure::new(
                    code,
                    "Command Failed",
                    ORIGIN,
                    if stderr.is_empty() {
                        format!("{} exited with status {code}", self.program)
                    } else {
                        stderr
                    },
                ),
                None => failure(
                    codes::APPLICATION_ERROR,
                    format!(
                        "{} was killed by signal {}{said}",
                        self.program,
                        status.signal().unwrap_or(0)
                    ),
                ),
            });
        }
        if out.truncated {
            return Err(failure(
                codes::RESPONSE_ENCODING_ERROR,
                format!(
                    "{} printed more than {} MiB",
                    self.program,
                    MAX_OUTPUT >> 20
                ),
            ));
        }
        let text = match String::from_utf8(out.bytes) {
            Ok(text) => text,
            // Not text at all: bytes.
            Err(e) => return Ok(Value::Bytes(e.into_bytes())),
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            return Ok(Value::None);
        }
        parse::value(text, false, "the command's output").map_err(|e| {
            failure(
                codes::RESPONSE_ENCODING_ERROR,
                format!("{}: {e:#}", self.program),
            )
        })
    }
}

/// A failure raised by this command, with the framework code's description.
fn failure(code: i32, details: String) -> Failure {
    Failure::new(code, description_of(code), ORIGIN, details)
}

/// What a command wrote on one of its streams, up to a limit.
#[derive(Debug, Default)]
struct Output {
    bytes: Vec<u8>,
    /// Whether it wrote more (read and dropped, so that it never blocks on a full pipe).
    truncated: bool,
}

async fn read_bounded(stream: Option<impl AsyncRead + Unpin>, limit: usize) -> Output {
    let mut output = Output::default();
    let Some(mut stream) = stream else {
        return output;
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return output,
            Ok(n) => {
                let room = limit.saturating_sub(output.bytes.len());
                output.bytes.extend_from_slice(&buf[..n.min(room)]);
                output.truncated |= n > room;
            }
        }
    }
}

/// Kills a command's process group when dropped, unless it finished (`None`).
#[derive(Debug)]
struct KillGroup(Option<u32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // std has no killpg; kill(1) takes a negative pid as a process group.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
