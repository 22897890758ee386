//! `iobufferpro replay`: the message replay of a running instance from the command line. It
//! logs in to the Operations Portal's API as an operator (the password from an environment
//! variable, never the command line), asks for the selection (`--dry-run`: only that), prints
//! what was selected and what was replayed. The API does the work and audits it, exactly as
//! for the portal's Replay dialog.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::api_client::Portal;

/// How long the whole exchange may take (a replay of 100,000 messages included).
const TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The pair whose messages are replayed.
    pair: String,
    /// The Operations Portal: `http://HOST:PORT` or `https://HOST:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The operator (or admin) to log in as.
    #[arg(long, default_value = "admin")]
    user: String,
    /// The environment variable holding the password.
    #[arg(long, default_value = "IOBP_PASSWORD")]
    password_env: String,
    /// HTTPS: trust this CA (PEM) instead of the system's roots.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// The first sequence number (included).
    #[arg(long)]
    from_seq: Option<u64>,
    /// The last sequence number (included).
    #[arg(long)]
    to_seq: Option<u64>,
    /// Messages stored at or after this time: milliseconds since the Unix epoch.
    #[arg(long, value_name = "MS")]
    since_ms: Option<u64>,
    /// Messages stored before this time: milliseconds since the Unix epoch.
    #[arg(long, value_name = "MS")]
    until_ms: Option<u64>,
    /// Only messages containing this text.
    #[arg(long)]
    contains: Option<String>,
    /// Only ASTM messages whose field (`O.3`: the sample id) …
    #[arg(long, requires = "astm_value")]
    astm_field: Option<String>,
    /// … has this value.
    #[arg(long, requires = "astm_field")]
    astm_value: Option<String>,
    /// Store the copies into this pair (default: the pair itself, for its destination).
    #[arg(long)]
    into: Option<String>,
    /// Only show the selection; store nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn main(args: &ReplayArgs) -> anyhow::Result<()> {
    let password = std::env::var(&args.password_env).with_context(|| {
        format!("set the password in the environment variable {}", args.password_env)
    })?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = rt.block_on(async {
        tokio::time::timeout(TIMEOUT, replay(args, &password))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {} s", TIMEOUT.as_secs()))?
    })?;
    print_answer(&answer);
    if answer["stopped"].is_string() {
        bail!("the replay stopped early");
    }
    Ok(())
}

async fn replay(args: &ReplayArgs, password: &str) -> anyhow::Result<Value> {
    let portal = Portal::parse(&args.url, args.ca.as_deref())?;
    let session = portal.login(&args.user, password).await?;
    let mut request = json!({"dry_run": args.dry_run});
    let fields = [
        ("from_seq", args.from_seq.map(Value::from)),
        ("to_seq", args.to_seq.map(Value::from)),
        ("since_ms", args.since_ms.map(Value::from)),
        ("until_ms", args.until_ms.map(Value::from)),
        ("contains", args.contains.clone().map(Value::from)),
        ("astm_field", args.astm_field.clone().map(Value::from)),
        ("astm_value", args.astm_value.clone().map(Value::from)),
        ("into", args.into.clone().map(Value::from)),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            request[k] = v;
        }
    }
    let path = format!("/api/v1/pairs/{}/replay", args.pair);
    session.call("POST", &path, &request.to_string()).await.context("replay")
}

fn print_answer(a: &Value) {
    let n = |k: &str| a[k].as_u64();
    match (n("first_seq"), n("last_seq")) {
        (Some(f), Some(l)) => {
            println!("selected {} message(s), #{f}–#{l}", n("count").unwrap_or(0));
        }
        _ => println!("no message is selected"),
    }
    if let Some(gone) = a["not_retained"].as_object() {
        println!(
            "no longer retained: {} message(s) of the range (the oldest kept is #{})",
            gone.get("removed").and_then(Value::as_u64).unwrap_or(0),
            gone.get("oldest_seq").and_then(Value::as_u64).unwrap_or(0)
        );
    }
    for m in a["preview"].as_array().into_iter().flatten() {
        let text: String = m["text"].as_str().unwrap_or_default().chars().take(100).collect();
        println!("  #{} {text}", m["seq"]);
    }
    if a["dry_run"] == true {
        println!("dry run: nothing stored");
        return;
    }
    let into = a["into"].as_str().unwrap_or_default();
    match (n("new_first_seq"), n("new_last_seq")) {
        (Some(f), Some(l)) => {
            println!("replayed {} message(s) into {into} as #{f}–#{l}", n("replayed").unwrap_or(0));
        }
        _ => println!("replayed nothing into {into}"),
    }
    if let Some(why) = a["stopped"].as_str() {
        println!("stopped: {why}; replay again from #{}", a["resume_from_seq"]);
    }
}
