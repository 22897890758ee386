//! `iobufferpro replay`: the message replay of a running instance from the command line. It
//! logs in to the Operations Portal's API as an operator (the password from an environment
//! variable, never the command line), asks for the selection (`--dry-run`: only that), prints
//! what was selected and what was replayed. The API does the work and audits it, exactly as
//! for the portal's Replay dialog.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Answers larger than this are refused (a replay answer is a few kilobytes).
const MAX_ANSWER: usize = 1 << 20;
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
    let login = json!({"username": args.user, "password": password}).to_string();
    let (status, head, body) = portal.request("POST", "/api/v1/session", &login, &[]).await?;
    if status != 200 {
        bail!("login as {}: {status} {}", args.user, error_text(&body));
    }
    let cookie = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie").then(|| value.trim().to_string())
        })
        .and_then(|v| v.split(';').next().map(str::to_string))
        .context("the login answer set no session cookie")?;
    let session: Value = serde_json::from_str(&body).context("the login answer")?;
    let csrf = session["csrf_token"].as_str().context("no csrf_token in the login answer")?;
    if session["must_change_password"] == true {
        bail!("{} must change the first-start password in the portal first", args.user);
    }
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
    let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf)];
    let (status, _, body) = portal.request("POST", &path, &request.to_string(), &headers).await?;
    if status != 200 {
        bail!("replay: {status} {}", error_text(&body));
    }
    serde_json::from_str(&body).context("the replay answer")
}

/// The API's `{"error": …}` text, or the body.
fn error_text(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
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

/// The Operations Portal, over plain HTTP or HTTPS.
struct Portal {
    host: String,
    port: u16,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Portal {
    fn parse(url: &str, ca: Option<&std::path::Path>) -> anyhow::Result<Portal> {
        let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(r), _) => (false, r),
            (_, Some(r)) => (true, r),
            _ => bail!("--url must start with http:// or https://"),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.trim_matches(['[', ']']).to_string(), p.parse().context("--url port")?)
            }
            _ => (authority.to_string(), if https { 443 } else { 80 }),
        };
        let tls = if https {
            let tls = iobp_tls::ClientTls {
                ca: ca.map(std::path::Path::to_path_buf),
                ..Default::default()
            };
            Some(iobp_tls::client_config(&tls)?)
        } else {
            None
        };
        Ok(Portal { host, port, tls })
    }

    /// One request on its own connection: (status, head, body).
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String, String)> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("connecting to {}:{}", self.host, self.port))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            self.port,
            body.len()
        );
        for (k, v) in headers {
            let _ = write!(req, "{k}: {v}\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        match &self.tls {
            None => exchange(tcp, req.as_bytes()).await,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .context("the portal's host name")?;
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake with the portal")?;
                exchange(stream, req.as_bytes()).await
            }
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &[u8],
) -> anyhow::Result<(u16, String, String)> {
    s.write_all(req).await?;
    s.flush().await?;
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify after a complete answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > MAX_ANSWER {
            bail!("the portal's answer is larger than {MAX_ANSWER} bytes");
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("not an HTTP answer")?;
    let status = head.get(9..12).and_then(|c| c.parse().ok()).context("no HTTP status")?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, head.to_string(), body))
}

/// The body of a chunked answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
