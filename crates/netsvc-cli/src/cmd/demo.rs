//! `netsvc demo`: example services to look at and play with.
//!
//! - `echo`: `echo ARG...` returns its argument (its arguments as a list when there are
//!   not exactly one); `sleep SECS` answers after that long; `fail [CODE [DETAILS]]` fails
//!   with that code (default 1), origin `demo`.
//! - `clock`: `now` returns the time; it publishes `system.time` (a UTC date-time) every
//!   second with a lifetime of 5 s, so a late subscriber gets the latest at once.
//!
//! Both are members of the group `demo`, so that groups show up too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use netsvc::value::DateTime;
use netsvc::{Exchange, Failure, Lifetime, Request, Runtime, Service, ServiceHandle, Value};

use crate::cli::{DEFAULT_ADDRESS, DemoArgs};
use crate::client::{self, Target};
use crate::exit;
use crate::output::status;
use crate::signals::Signals;

/// The group both demo services join.
const GROUP: &str = "demo";

/// How long `sleep` may be asked to sleep.
const MAX_SLEEP: f64 = 3600.0;

/// How long each clock report stays cached for late subscribers.
const CLOCK_LIFETIME: Duration = Duration::from_secs(5);

pub(crate) async fn run(args: DemoArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    let rt = Runtime::with_config(netsvc::RuntimeConfig::default())?;
    let address = match (&args.listen, &args.address) {
        (None, None) => std::env::var("NETSVC_EXCHANGE")
            .ok()
            .filter(|a| !a.is_empty()),
        (_, address) => address.clone(),
    };
    let (exchange, via, reporter) = match (&args.listen, &address) {
        (None, Some(address)) => {
            let target = Target {
                address: address.clone(),
                group: args.group.clone(),
                retry: args.retry,
                wait: args.wait,
                security: args.security.clone(),
            };
            let exchange = client::client_exchange(&rt, &target)?;
            let conn = client::link(rt.clone(), exchange, target, signals).await?;
            let reporter = client::report_link_changes(&conn);
            (conn.exchange.clone(), address.clone(), Some(reporter))
        }
        (listen, _) => {
            let exchange = Exchange::server(&rt)
                .group(&args.group)
                .build()
                .with_context(|| format!("invalid exchange group {:?}", args.group))?;
            let bound = exchange
                .listen(listen.as_deref().unwrap_or(DEFAULT_ADDRESS))
                .await?;
            status(format_args!("listening on {bound}"));
            (exchange, bound.to_string(), None)
        }
    };

    let echo = echo_service(&rt)?;
    let clock = clock_service(&rt)?;
    let ticker = tokio::spawn(tick(clock.handle()));
    status(format_args!(
        "demo ready: services echo and clock available through {via}"
    ));
    // The flags a client needs to reach these services from another shell.
    let flags = if args.group.is_empty() {
        format!("--connect {via}")
    } else {
        format!("--connect {via} -g {}", args.group)
    };
    status(format_args!(
        "try: netsvc call {flags} echo echo '\"hi\"'   or   netsvc monitor {flags} clock"
    ));

    let stop = signals.recv().await;
    status(format_args!("{}: withdrawing echo and clock", stop.name()));
    ticker.abort();
    drop(reporter);
    // Withdraw with "process exit" (dropping the services would say "owner").
    rt.shutdown();
    drop((echo, clock));
    exchange.shutdown(client::CLOSE_GRACE).await;
    Ok(exit::OK)
}

fn echo_service(rt: &Runtime) -> anyhow::Result<Service> {
    Ok(rt
        .service("echo")
        .join_group(GROUP)
        .export("echo", |req| async move {
            let mut args = req.into_args();
            Ok::<_, Failure>(if args.len() == 1 {
                args.remove(0)
            } else {
                Value::List(args)
            })
        })
        .export("sleep", |req| async move {
            let secs = sleep_seconds(&req)?;
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            Ok::<_, Failure>(Value::Float(secs))
        })
        .export("fail", |req| async move {
            req.expect_args(0, Some(2))?;
            let args = req.args();
            let code = match args.first() {
                None => 1,
                Some(v) => v
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| Failure::parameters_incorrect("CODE must be an integer"))?,
            };
            let details = match args.get(1) {
                None => "failure requested by the caller".to_owned(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            Err::<Value, _>(Failure::new(code, "Requested Failure", "demo", details))
        })
        .build()?)
}

fn sleep_seconds(req: &Request) -> Result<f64, Failure> {
    req.expect_args(1, Some(1))?;
    let secs = req
        .args()
        .first()
        .and_then(Value::as_f64)
        .ok_or_else(|| Failure::parameters_incorrect("SECS must be a number"))?;
    if !(0.0..=MAX_SLEEP).contains(&secs) {
        return Err(Failure::parameters_incorrect(format!(
            "SECS must be between 0 and {MAX_SLEEP}"
        )));
    }
    Ok(secs)
}

fn clock_service(rt: &Runtime) -> anyhow::Result<Service> {
    Ok(rt
        .service("clock")
        .join_group(GROUP)
        .export("now", |_| async move { now().map(Value::DateTime) })
        .build()?)
}

/// The current UTC time, to the second.
fn now() -> Result<DateTime, Failure> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Failure::application_error(format!("the system clock is wrong: {e}")))?
        .as_secs();
    let secs = i64::try_from(secs)
        .map_err(|_| Failure::application_error("the system clock is out of range"))?;
    DateTime::from_unix(secs, 0).map_err(|e| Failure::application_error(e.to_string()))
}

/// Publishes `system.time` every second until the clock is withdrawn.
async fn tick(clock: ServiceHandle) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let time = match now() {
            Ok(t) => t,
            Err(f) => {
                tracing::warn!("clock: {f}");
                continue;
            }
        };
        if let Err(e) = clock.publish(
            "system.time",
            Value::DateTime(time),
            Lifetime::For(CLOCK_LIFETIME),
        ) {
            tracing::debug!("clock stopped: {e}");
            return;
        }
    }
}
